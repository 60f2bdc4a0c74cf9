"""Approximate nearest-neighbour search at a million vectors: recall@10 against exact search,
queries per second on one thread, build time and RAM bytes per vector for Flat (exact),
HNSW32, IVF-Flat, plain IVF-PQ and IVF-PQ with OPQ rotation and re-ranking from the full
vectors in a memory-mapped file, all measured through the product's code
(`semsearch.index.exact.ExactIndex`, `semsearch.index.approx.build` and
`ApproximateIndex.search`, cosine metric), against Flat measured in the same run.

Data (see benchmarks/ann_data.py): real lite0 `_head_act/gem` vectors (1280-d) of the 3,430
shared images and 10 random resized crops of each (extracted once, ~4 min, then cached in
--workdir). Queries are --queries real views (the original and 3 crops) of 250 images held
out of the database: neither they nor anything made from them is in it. The database is the
other 34,980 real views plus synthetic vectors up to --n, each a random real database view
plus noise fitted to real pairs of vectors, by default (`--synthetic views`) a crop minus
its original: Gaussian with the pairs' covariance, times a per-vector scale drawn from their
relative norms, coordinates that are off in the base kept off as often as in real pairs,
clipped at the smallest real coordinate (~0), scaled so that the median base-to-synthetic
distance is the real pairs'. So a million vectors are ~3,200 pictures seen ~300 ways each:
denser near-duplicate clouds than a million distinct photos have, which is hard on PQ
without re-ranking (neighbours at nearly equal distances) and may flatter IVF and graphs.
`--synthetic pictures` fits the noise to pairs of nearest distinct pictures instead (each
synthetic vector a new picture about as far from its base as real neighbours are from each
other), the opposite bias. The output compares real and synthetic sets of the same size and
make-up. Ground truth is exact top-10 by cosine (`approx.exact_neighbours`, all threads).

What is measured, per configuration and search setting:
* build s: `approx.build` wall time with all cores (training on the product's sample size,
  adding, saving; Flat: filling the FAISS flat index the product's ExactIndex wraps);
* RAM B/vec: `ApproximateIndex.ram_bytes() / n` (codes, ids and quantizers that stay in
  memory; the `.full.npy` re-ranking vectors and the id map are memory-mapped and not
  counted; for indexes over 1 GiB, the size of the saved index file, which is the same
  serialization without the memory it costs). IVF-Flat is measured twice: lists in RAM
  ("ivfflat", what the catalogue's index_on_disk=auto picks while they take under a
  quarter of RAM: 5 GB at 1M on 24 GiB) and lists in a memory-mapped file ("ivfflatdisk",
  what it picks above that); as every query scans nprobe of those lists, the file's size
  is counted as RAM. Flat: n * d * 4 + 8
  bytes of id per vector;
* disk B/vec: the memory-mapped files (re-ranking vectors, on-disk lists, id map);
* recall@10, and qps: one query per call to `search` (as the API asks), one thread (FAISS
  OpenMP and BLAS limited to 1), page cache warm (re-ranking reads hit the page cache, not the
  disk); qps is 1 / the median latency (the machine is shared; "mean qps" is queries / total
  time), "batch qps" is all queries in one call, still one thread. Flat is timed on
  --flat-queries queries (each reads all n vectors).
HNSW32 over all 1280 dimensions holds ~5.4 KB per vector, and the product's build keeps two
copies for a moment (~11 GB at 1M); --hnsw-n builds it on the first rows only, in which case
its recall and qps are for that smaller n against that subset's own exact top-10, its build
time is also extrapolated to n (n log n), and it is never picked as the recommendation.

Recommended = the fastest setting with recall@10 >= 0.95 (else the best recall); compressed =
the best recall at <= 64 RAM bytes per vector. Targets: recall@10 >= 0.95 at >= 500 qps
(aim 1000); a compressed setting with recall@10 >= 0.8.

Run:  python benchmarks/ann.py                 (1,000,000; about an hour on 2 cores, ~12 GB
                                                RAM at the peak, ~16 GB disk in --workdir)
      python benchmarks/ann.py --n 100000      (about 10 minutes, OPQ training is most of it)
      python benchmarks/ann.py --synthetic pictures   (the other synthetic model, see above)
      python benchmarks/ann.py --only ivfflat,opq32   (Flat is always measured, as baseline)
The last line is `best_recall_at_10=.. qps=.. bytes_per_vector=..` for the recommended setting.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

import ann_data  # next to this file (a script's folder is on sys.path)
from semsearch.index import approx
from semsearch.index.approx import ApproximateIndex, SearchParams
from semsearch.index.exact import ExactIndex
from semsearch.index.metric import Metric
from semsearch.indexspec import IndexSpec

Array = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
K, WARMUP, PER_IMAGE, CROPS = 10, 5, 4, 10
TARGET_RECALL, TARGET_QPS, AIM_QPS, MAX_BYTES, COMPRESSED_RECALL = 0.95, 500, 1000, 64, 0.8


@dataclass(frozen=True)
class Config:
    """One index to build, named by a factory string ({nlist} filled in), and its sweep."""

    key: str
    factory: str
    sweep: tuple[SearchParams, ...]
    on_disk: bool = False


def configs(nlist: int) -> list[Config]:
    """Gives the configurations measured, nlist being the product's automatic choice."""
    def probe(*nprobes: int) -> tuple[SearchParams, ...]:
        return tuple(SearchParams(nprobe=p) for p in nprobes)

    def grid(nprobes: tuple[int, ...], refines: tuple[int, ...]) -> tuple[SearchParams, ...]:
        return tuple(SearchParams(nprobe=p, refine_k=r) for p in nprobes for r in refines)

    ef = tuple(SearchParams(ef_search=e) for e in (64, 128, 256, 512))
    return [
        Config("flat", "Flat", (SearchParams(),)),
        Config("hnsw", "HNSW32", ef),
        Config("ivfflat", f"IVF{nlist},Flat", probe(8, 16, 32, 64)),
        Config("ivfflatdisk", f"IVF{nlist},Flat", probe(8, 16, 32, 64), on_disk=True),
        Config("ivfpq", f"IVF{nlist},PQ32", probe(16, 32, 64)),
        Config("opq64", f"OPQ64_256,IVF{nlist},PQ64,RFlat",
               grid((16, 32, 64), (64, 128, 256, 512))),
        Config("opq32", f"OPQ32_128,IVF{nlist},PQ32,RFlat",
               grid((16, 32, 64), (64, 128, 256, 512))),
        Config("pcafs", f"PCAR256,IVF{nlist},PQ64x4fs,RFlat",
               grid((16, 32, 64), (128, 256, 512))),
        Config("pcahnsw", "PCAR256,HNSW32,RFlat",
               tuple(SearchParams(ef_search=e, refine_k=r) for e in (64, 128) for r in (64, 128))),
    ]


@dataclass
class Row:
    key: str
    factory: str
    setting: str
    n: int
    build_s: float
    ram_bpv: float
    disk_bpv: float
    recall: float
    qps: float
    mean_qps: float
    p50_ms: float
    batch_qps: float
    note: str = ""
    applied: tuple[tuple[str, int], ...] = ()  # the search settings in force
    on_disk: bool = False


class PeakMemory:
    """Samples this process's anonymous resident memory (heap: not the file pages it maps)
    ten times a second and keeps the largest figure."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def label(r: Row) -> str:
    return r.factory + (" (lists on disk)" if r.on_disk else "")


@contextmanager
def one_thread() -> Iterator[None]:
    """Limits FAISS (OpenMP) and numpy (BLAS) to one thread for a while."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def timed(search: Callable[[Array, int], tuple[Array, Ids]], queries: Array
          ) -> tuple[float, float, float, float, Ids]:
    """Gives (qps, mean qps, p50 ms, batch qps, ids found) on one thread: qps is 1 / the
    median time of one query per call, so that a burst of other work on a shared machine
    does not swing it; mean qps is queries / total time of those calls."""
    with one_thread():
        times, found = ann_data.latencies(search, queries, K, WARMUP)
        t0 = time.perf_counter()
        search(queries, K)
        batch = time.perf_counter() - t0
    p50 = float(np.median(times))
    return 1.0 / p50, len(queries) / float(times.sum()), p50 * 1e3, len(queries) / batch, found


def recall_at_k(found: Ids, truth: Ids) -> float:
    """Gives the share of the true k nearest that were returned among the first k."""
    hits = sum(len(set(f[:K].tolist()) & set(t[:K].tolist())) for f, t in zip(found, truth,
                                                                            strict=True))
    return hits / (len(truth) * K)


def setting_text(index: ApproximateIndex) -> str:
    """Gives the search settings in force, as the product applied them."""
    parts = [f"{k}={v}" for k, v in index.applied.items()]
    if index.spec.refine:
        parts.append(f"refine={index.candidates(K)}")
    return " ".join(parts) or "-"


def ground_truth(path: Path, queries: Array, source: ann_data.MemmapVectors) -> Ids:
    """Gives exact top-K ids per query (computed once, then read from `path`)."""
    if path.exists():
        return np.load(path)
    truth = approx.exact_neighbours(queries, source, Metric(), K)
    np.save(path, truth)
    return truth


def measure_flat(source: ann_data.MemmapVectors, queries: Array, truth: Ids) -> Row:
    """Gives the exact baseline's row. The FAISS flat index ExactIndex wraps is filled a
    chunk at a time (ExactIndex.build would hold two normalised copies of all vectors)."""
    t0 = time.perf_counter()
    idmap = faiss.IndexIDMap(faiss.IndexFlatIP(source.dim))
    for ids, x in source.chunks(approx.CHUNK):
        idmap.add_with_ids(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), ids)
    index = ExactIndex(Metric(), idmap)
    build_s = time.perf_counter() - t0
    qps, mean_qps, p50, batch_qps, found = timed(index.search, queries)
    n, d = source.count, source.dim
    return Row("flat", "Flat", "-", n, build_s, (n * d * 4 + n * 8) / n, 0.0,
               recall_at_k(found, truth[:len(queries)]), qps, mean_qps, p50, batch_qps,
               f"timed on {len(queries)} queries")


def measure(cfg: Config, source: ann_data.MemmapVectors, queries: Array, truth: Ids,
            folder: Path, full_n: int) -> list[Row]:
    """Builds one configuration with the product's code and gives a row per search setting."""
    spec = IndexSpec.parse(cfg.factory)
    metric = Metric()
    stem = spec.tag
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    built, files = approx.build(source, spec, metric, folder, stem, on_disk=cfg.on_disk)
    build_s = time.perf_counter() - t0
    n = source.count
    saved = (folder / files.index).stat().st_size
    # ram_bytes() is the size of the index serialized in memory, the very bytes build() just
    # saved; on a multi-GB index the serialization needs ~2x the index on top (measured:
    # 18.5 GiB peak for IVF4096,Flat at 1M), so above 1 GiB the saved file's size is used.
    ram = built.ram_bytes() if saved < 2**30 else saved
    del built
    on_disk = [files.full, files.ivfdata, files.ids]
    disk = sum((folder / f).stat().st_size for f in on_disk if f)
    if files.ivfdata:  # scanned by every query: it has to stay in the page cache
        ram += (folder / files.ivfdata).stat().st_size
    note = ""
    if n < full_n:
        est = build_s * full_n / n * math.log(full_n) / math.log(n)
        note = (f"measured at n={n:,} (recall, qps vs that subset); build at "
                f"{full_n:,} extrapolated ~{est / 60:.0f} min")
    elif files.ivfdata:
        note = "lists in a mmapped file (counted as RAM)"
    rows = []
    for params in cfg.sweep:
        index = ApproximateIndex.load(folder, files, spec, metric, params)
        qps, mean_qps, p50, batch_qps, found = timed(index.search, queries)
        applied = dict(index.applied)
        if spec.refine:
            applied["refine"] = index.candidates(K)
        rows.append(Row(cfg.key, cfg.factory, setting_text(index), n, build_s, ram / n,
                        disk / n, recall_at_k(found, truth), qps, mean_qps, p50, batch_qps,
                        note, tuple(applied.items()), cfg.on_disk))
        print_row(rows[-1], None)
        del index
    for name in files.names():
        (folder / name).unlink(missing_ok=True)
    return rows


HEADER = (f"{'config':<36}{'setting':<26}{'n':>10}{'build s':>9}{'RAM B/vec':>11}"
          f"{'disk B/vec':>11}{'recall@10':>10}{'qps':>8}{'x flat':>8}{'p50 ms':>8}"
          f"{'mean qps':>9}{'batch qps':>10}  note")


def print_row(r: Row, flat_qps: float | None) -> None:
    ratio = f"{r.qps / flat_qps:.0f}x" if flat_qps else ""
    print(f"{label(r):<36}{r.setting:<26}{r.n:>10,}{r.build_s:>9.1f}{r.ram_bpv:>11.1f}"
          f"{r.disk_bpv:>11.0f}{r.recall:>10.3f}{r.qps:>8.0f}{ratio:>8}{r.p50_ms:>8.2f}"
          f"{r.mean_qps:>9.0f}{r.batch_qps:>10.0f}  {r.note}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    ap.add_argument("--queries", type=int, default=1000, help="held-out query vectors")
    ap.add_argument("--flat-queries", type=int, default=50,
                    help="queries timed on Flat (each reads every vector)")
    ap.add_argument("--hnsw-n", type=int, default=1_000_000,
                    help="rows HNSW32 (full dimension) is built on, at most")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/semsearch-ann"),
                    help="cached real vectors, database file, ground truth, index files")
    ap.add_argument("--only", default="",
                    help="comma-separated subset of: "
                    + ",".join(c.key for c in configs(0) if c.key != "flat"))
    ap.add_argument("--synthetic", choices=("views", "pictures"), default="views",
                    help="noise model: more views of the database's pictures (crop minus "
                    "original), or new pictures (a picture minus its nearest other picture)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.perf_counter()
    memory = PeakMemory()
    n = args.n
    exact_max = 200_000  # the product's catalogue default (EXACT_MAX)
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    wanted = {k for k in args.only.split(",") if k}
    todo = [c for c in configs(nlist) if c.key != "flat" and (not wanted or c.key in wanted)]
    unknown = wanted - {c.key for c in configs(nlist)}
    if unknown:
        ap.error(f"unknown configurations {sorted(unknown)}")
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores; n={n:,}, dim {ann_data.DIM}, "
          f"k={K}, metric cosine, nlist={nlist} (the product's automatic choice for n)")

    t0 = time.perf_counter()
    real = ann_data.real_views(work / f"real_lite0_c{CROPS}_s{args.seed}.npz", CROPS, args.seed)
    split = ann_data.split(real, args.queries, PER_IMAGE, args.seed)
    if args.synthetic == "views":
        pairs = ann_data.crop_pairs(real, split.db_images)
        pair_label = "original to its crop"
    else:
        pairs = ann_data.neighbour_pairs(real, split.db_images)
        pair_label = "original to the nearest other original"
    noise = ann_data.NoiseModel.fit(*pairs, seed=args.seed)
    print(f"\nreal vectors: lite0@_head_act/gem of {len(np.unique(real.image)):,} shared "
          f"images + {CROPS} random resized crops each = {len(real.vectors):,} "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"queries: {len(split.queries):,} real views (original + {PER_IMAGE - 1} crops) of "
          f"{-(-len(split.queries) // PER_IMAGE)} held-out images; database: "
          f"{min(n, len(split.db_real)):,} real views + {max(0, n - len(split.db_real)):,} "
          "synthetic (real view + crop-difference noise)")
    print(f"synthetic model '{args.synthetic}': noise fitted to {len(pairs[0]):,} real pairs "
          f"({pair_label}); off coordinates of the base kept off with p={noise.keep_off:.2f}")
    for line in ann_data.compare(split, noise, pairs, pair_label, args.seed):
        print(line)

    t0 = time.perf_counter()
    stem = f"{args.synthetic}_n{n}_s{args.seed}"
    ann_data.write_database(work / f"db_{stem}.npy", n, split.db_real, noise, args.seed)
    source = ann_data.MemmapVectors(work / f"db_{stem}.npy")
    truth = ground_truth(work / f"truth_{stem}_q{args.queries}.npy",
                         split.queries, source)
    print(f"database file and exact top-{K} of the queries ready in "
          f"{time.perf_counter() - t0:.0f} s")
    folder = work / "indexes"
    shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{HEADER}")
    flat = measure_flat(source, split.queries[:args.flat_queries], truth)
    print_row(flat, flat.qps)
    rows = [flat]
    for cfg in todo:
        sub, sub_truth = source, truth
        if cfg.key == "hnsw" and args.hnsw_n < n:
            sub = ann_data.MemmapVectors(source.path, args.hnsw_n)
            sub_truth = ground_truth(
                work / f"truth_{stem}_first{args.hnsw_n}_q{args.queries}.npy",
                split.queries, sub)
        try:
            rows += measure(cfg, sub, split.queries, sub_truth, folder, n)
        except Exception as exc:  # noqa: BLE001 - one configuration failing is a finding
            print(f"{cfg.factory:<36}FAILED: {type(exc).__name__}: {exc}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)

    print(f"\nall settings, qps against Flat ({flat.qps:.1f} qps) measured in this run:")
    print(HEADER)
    for r in rows:
        print_row(r, flat.qps)

    full = [r for r in rows if r.n == n]
    meeting = [r for r in full if r.recall >= TARGET_RECALL]
    best = max(meeting, key=lambda r: r.qps) if meeting else max(full, key=lambda r: r.recall)
    small = [r for r in full if r.ram_bpv <= MAX_BYTES]
    compressed = max(small, key=lambda r: (r.recall, r.qps)) if small else None
    auto = approx.auto_spec(n, exact_max)
    # The catalogue's on_disk=auto: lists on disk when they would take over a quarter of RAM.
    ram_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    auto_disk = n * (ann_data.DIM * 4 + 8) > ram_total // 4
    defaults = {"nprobe": max(16, nlist // 128), "efSearch": 128, "refine": max(4 * K, 64)}

    def at_defaults(r: Row) -> bool:
        return all(defaults[name] == value for name, value in r.applied)

    print(f"\nat the product's default search settings (nprobe max(16, nlist/128) = "
          f"{defaults['nprobe']}, efSearch {defaults['efSearch']}, refine max(4k, 64) = "
          f"{defaults['refine']} for k={K}):")
    for r in rows:
        if r.key == "flat" or at_defaults(r):
            auto_mark = "  <- the product's automatic choice at this n" if (
                r.factory == str(auto) and r.n == n and r.on_disk == auto_disk) else ""
            print(f"  {label(r):<36}recall@10 {r.recall:.3f}, {r.qps:>5.0f} qps, "
                  f"{r.ram_bpv:>7.1f} RAM B/vec{auto_mark}")
    print(f"recommended (fastest with recall@10 >= {TARGET_RECALL}, else best recall): "
          f"{label(best)} {best.setting}: recall@10 {best.recall:.3f}, {best.qps:.0f} qps "
          f"(x{best.qps / flat.qps:.0f} Flat), {best.ram_bpv:.0f} RAM B/vec, "
          f"build {best.build_s:.0f} s")
    met = best.recall >= TARGET_RECALL and best.qps >= TARGET_QPS
    print(f"  target recall@10 >= {TARGET_RECALL} at >= {TARGET_QPS} qps on one thread: "
          f"{'met' if met else 'NOT met'}; aim {AIM_QPS} qps: "
          f"{'met' if met and best.qps >= AIM_QPS else 'not met'}")
    if compressed is None:
        print(f"compressed (<= {MAX_BYTES} RAM B/vec): none measured")
    else:
        ok = compressed.recall >= COMPRESSED_RECALL
        print(f"compressed (best recall at <= {MAX_BYTES} RAM B/vec): {compressed.factory} "
              f"{compressed.setting}: recall@10 {compressed.recall:.3f}, {compressed.qps:.0f} qps, "
              f"{compressed.ram_bpv:.1f} RAM B/vec (+{compressed.disk_bpv:.0f} B/vec on disk); "
              f"target recall@10 >= {COMPRESSED_RECALL}: {'met' if ok else 'NOT met'}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"total {(time.perf_counter() - started) / 60:.1f} min; peak memory "
          f"{memory.stop() / 2**30:.1f} GiB anonymous (sampled every 0.1 s), {rss:.1f} GiB "
          "resident counting mapped file pages")
    print(f"best_recall_at_10={best.recall:.3f} qps={best.qps:.0f} "
          f"bytes_per_vector={best.ram_bpv:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
