"""Indexing throughput of the Ray engine against the local engine, same images, same machine.

Copies the images of a folder (default ../shared/datasets/iconic200) --copies times into a
temporary folder, then indexes it with model lite0, each run into a fresh temporary
catalogue (the ONNX graph is exported once, before any timing):

* local: `index_folder` (decoding threads and ONNX Runtime in this process);
* ray: `index_folder_ray` on a Ray cluster (a local one sized to the machine, or --address),
  an actor pool with one CPU per actor.

Ray's start-up (`ray.init`, once per `semsearch index --engine ray` run) is timed apart.
Each Ray run still pays for its actor pool (processes, imports, loading the model), so two
rates are given per engine: end to end (one run, as a user sees it, without Ray's start-up)
and steady state (from the first written batch to the last, once the model is loaded). The
local runs come before Ray starts and again after it stops (medians over both), so that a
change in the machine's load shows.

Run:  python benchmarks/ray_extract.py              (iconic200 x 5; 3 ray runs, 3 + 3 local)
      python benchmarks/ray_extract.py --quick      (iconic200 x 1, 1 run each, smoke check)
The last line is `local_img_s=.. ray_img_s=.. ratio=.. ray_startup_s=..` (end to end, the
medians; ratio is ray over local), then the steady-state rates.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from semsearch.config import resolve
from semsearch.images import find_images
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport
from semsearch.indexing.ray_cluster import ray_runtime
from semsearch.indexing.ray_run import index_folder_ray
from semsearch.indexing.ray_worker import recipe_for
from semsearch.session import Session

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BATCH = 32


class Clock:
    """A progress callback that notes when each batch was written."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.marks.append((time.perf_counter(), done))

    def steady(self) -> float:
        """Gives images per second from the first written batch to the last."""
        written = [(t, d) for t, d in self.marks if d > 0]
        if len(written) < 2 or written[-1][0] <= written[0][0]:
            return float("nan")
        return (written[-1][1] - written[0][1]) / (written[-1][0] - written[0][0])


def copy_images(source: Path, out: Path, copies: int) -> int:
    """Copies every image under source into out/<copy>/<relative path>; gives how many."""
    files = [Path(f.path) for f in find_images(source)]
    for c in range(copies):
        for path in files:
            dest = out / f"copy{c}" / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    return len(files) * copies


def vectors(session: Session) -> dict[str, np.ndarray]:
    record = session.store.feature_set(session.feature_set())
    ids, matrix = session.store.vectors(record.id)
    paths = session.store.images(ids.tolist())
    return {paths[int(i)].path: matrix[n] for n, i in enumerate(ids)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DATASETS / "iconic200"),
                    help="images to index (default ../shared/datasets/iconic200)")
    ap.add_argument("--copies", type=int, default=5, help="copies of the folder to index")
    ap.add_argument("--repeats", type=int, default=3,
                    help="ray runs, and local runs before and after them (medians count)")
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--address", default=None,
                    help="a Ray cluster's HOST:PORT (default: start a local one)")
    ap.add_argument("--quick", action="store_true", help="small run for a smoke check")
    args = ap.parse_args()
    if args.quick:
        args.copies, args.repeats = 1, 1
    source = Path(args.folder)
    if not source.is_dir():
        sys.exit(f"image folder {source} is missing (see ../shared/datasets/README.md)")
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="semsearch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        n = copy_images(source, tmp / "images", args.copies)
        print(f"{n} images ({args.copies} x {source.name}); model {args.model}; "
              f"batch {BATCH}; cores={cores}")
        cache = str(tmp / "cache")

        def session(name: str) -> Session:
            config = resolve({"db": str(tmp / f"{name}.db"), "cache_dir": cache,
                              "model": args.model, "batch_size": BATCH}, env={})
            return Session(config)

        with session("warmup") as warm:
            t0 = time.perf_counter()
            warm.extractor(warm.feature_set())  # exports the ONNX graph into the cache
            print(f"exported/loaded {warm.feature_set()} in {time.perf_counter() - t0:.1f} s")

        results: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
        kept: dict[str, dict[str, np.ndarray]] = {}

        def measure(engine: str, run: int, index: Callable[[Session, Clock], IndexReport]
                    ) -> None:
            with session(f"{engine}{run}") as s:
                s.extractor(s.feature_set())  # the model loads outside the timing
                clock = Clock()
                t0 = time.perf_counter()
                report = index(s, clock)
                seconds = time.perf_counter() - t0
                if report.embedded != n or report.failed:
                    sys.exit(f"{engine}: embedded {report.embedded} of {n}, failed: "
                             f"{report.failed[:3]}")
                results[engine].append((n / seconds, clock.steady()))
                print(f"{engine:5} run {run + 1}: {n / seconds:7.1f} img/s end to end "
                      f"({seconds:.2f} s), {clock.steady():7.1f} img/s steady")
                kept[engine] = vectors(s)

        def local(s: Session, clock: Clock) -> IndexReport:
            return index_folder(s.store, s.extractor(s.feature_set()), tmp / "images",
                                batch_size=BATCH, workers=0, progress=clock)

        def ray(s: Session, clock: Clock) -> IndexReport:
            fs = s.feature_set()
            extractor = s.extractor(fs)
            return index_folder_ray(s.store, extractor, recipe_for(s, fs, extractor),
                                    tmp / "images", batch_size=BATCH, progress=clock)

        # Local runs before Ray starts and after it stops (an idle Ray cluster still takes
        # some CPU), so that a drift in the machine's load shows as a gap between them.
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        for run in range(args.repeats):
            measure("local", run, local)
        t0 = time.perf_counter()
        with ray_runtime(args.address) as ray_module:
            startup = time.perf_counter() - t0
            cpus = ray_module.cluster_resources().get("CPU", 0)
            print(f"ray start-up: {startup:.2f} s ({cpus:g} CPUs in the cluster)")
            for run in range(args.repeats):
                measure("ray", run, ray)
        for run in range(args.repeats, 2 * args.repeats):
            measure("local", run, local)
        print(f"load average after: {os.getloadavg()[0]:.2f}")

        worst = max(float(np.abs(kept["ray"][p] - v).max()) for p, v in kept["local"].items())
        print(f"same vectors: {len(kept['ray'])} of {len(kept['local'])} paths, "
              f"largest difference {worst:.2e}")

    local_e2e, local_steady = (float(np.median(x)) for x in zip(*results["local"], strict=True))
    ray_e2e, ray_steady = (float(np.median(x)) for x in zip(*results["ray"], strict=True))
    print(f"overhead per ray run (actor pool start, model load, scheduling): "
          f"{n / ray_e2e - n / ray_steady:.2f} s; steady ray/local "
          f"{ray_steady / local_steady:.2f}")
    print(f"local_img_s={local_e2e:.2f} ray_img_s={ray_e2e:.2f} ratio={ray_e2e / local_e2e:.2f} "
          f"ray_startup_s={startup:.2f} local_steady_img_s={local_steady:.2f} "
          f"ray_steady_img_s={ray_steady:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
