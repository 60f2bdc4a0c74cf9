"""Bigger than memory: builds an IVF index with on-disk inverted lists over vectors read a
chunk at a time, and reports the process's peak anonymous memory (heap: what cannot be paged
out to a file) against the size of the vectors, with recall@10 and queries per second.

Memory-mapped files (the vectors being read, the inverted-list file being written) show up in
RSS as page cache, which the kernel drops under pressure; RssAnon is the part that has to fit.
A sampling thread reads /proc/self/status every 20 ms.

Vectors are benchmarks/ann.py's (real lite0 features of the shared images and crops, plus
the documented synthetic model; see benchmarks/ann_data.py). The in-memory build of the same
index, measured in the same run, is the baseline.

Run:  python benchmarks/ondisk.py --n 1000000     (about 10 minutes on 2 cores)
      python benchmarks/ondisk.py --n 200000      (quick)
The last line is `vectors_gb=.. ondisk_peak_anon_gb=.. memory_peak_anon_gb=.. ratio=..
recall_at_10=..`.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import threading
import time
from pathlib import Path

import ann_data  # next to this file
from ann import CROPS, PER_IMAGE, K, ground_truth, recall_at_k, timed
from semsearch.index import approx
from semsearch.index.approx import SearchParams
from semsearch.index.metric import Metric
from semsearch.indexspec import IndexSpec


def anon_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakAnon:
    """Samples RssAnon in a thread; `peak` is the highest seen since start."""

    def __init__(self) -> None:
        self.peak = anon_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, anon_bytes())

    def __enter__(self) -> PeakAnon:
        self.peak = anon_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anon_bytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/semsearch-ann"))
    ap.add_argument("--skip-memory", action="store_true",
                    help="leave out the in-memory baseline build")
    args = ap.parse_args()
    work: Path = args.workdir
    path, queries, truth_file = ann_data.views_database(work, args.n, 1000, CROPS, PER_IMAGE)
    source = ann_data.MemmapVectors(path)
    truth = ground_truth(truth_file, queries, source)[:args.queries]
    queries = queries[:args.queries]
    nlist = 2 ** round(math.log2(4 * math.sqrt(args.n)))
    spec = IndexSpec.parse(f"IVF{nlist},Flat")
    vector_bytes = args.n * source.dim * 4
    print(f"{args.n:,} vectors x {source.dim} = {vector_bytes / 1e9:.2f} GB; index {spec}, "
          "cosine; built a chunk (65,536 vectors) at a time")
    rows = {}
    for label, on_disk in (("on-disk lists", True), ("in-memory lists", False)):
        if not on_disk and args.skip_memory:
            continue
        folder = work / f"ondisk-bench-{on_disk}"
        shutil.rmtree(folder, ignore_errors=True)
        before = anon_bytes()
        t0 = time.perf_counter()
        with PeakAnon() as peak:
            index, files = approx.build(source, spec, Metric(), folder, "x", on_disk=on_disk,
                                        params=SearchParams(nprobe=32))
        seconds = time.perf_counter() - t0
        qps, _, _, _, found = timed(index.search, queries)
        recall = recall_at_k(found, truth)
        extra = peak.peak - before
        disk = sum(f.stat().st_size for f in folder.iterdir())
        rows[on_disk] = (extra, recall)
        print(f"{label:<16} build {seconds:6.0f} s  peak heap during build "
              f"{extra / 1e9:5.2f} GB ({extra / vector_bytes:.0%} of the vectors)  "
              f"index RAM {index.ram_bytes() / 1e6:7.1f} MB  on disk {disk / 1e9:5.2f} GB  "
              f"recall@{K} {recall:.3f} (nprobe 32)  {qps:,.0f} qps 1 thread")
        del index
        shutil.rmtree(folder, ignore_errors=True)
    on_extra, on_recall = rows[True]
    mem_extra = rows.get(False, (float("nan"), 0.0))[0]
    print(f"vectors_gb={vector_bytes / 1e9:.2f} ondisk_peak_anon_gb={on_extra / 1e9:.2f} "
          f"memory_peak_anon_gb={mem_extra / 1e9:.2f} ratio={on_extra / mem_extra:.2f} "
          f"recall_at_10={on_recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
