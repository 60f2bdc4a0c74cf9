"""Held-out gain of `semsearch adapt` on the shared labeled datasets.

For each dataset: index it with the default feature set (what `semsearch index` uses), learn
an adapter with the default settings from 70% of each class, and measure retrieval among the
other 30% (queries and gallery both held out, cosine), with the base vectors (the baseline,
measured in the same run) and with the adapted ones. The adapter never sees the held-out
images.

Run:  python benchmarks/adapt.py                 (about 3 minutes on 2 cores)
      python benchmarks/adapt.py --model lite0   (another base feature set)
Last line: `<dataset>_heldout_map=<before>-><after> ...` for every dataset.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from semsearch.config import resolve
from semsearch.evaluate.adapt import TrainSettings, adapt
from semsearch.session import Session

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="iconic200,fashion200,caltech101")
    ap.add_argument("--model", default=None, help="base model (default: the default's)")
    ap.add_argument("--dim", type=int, default=TrainSettings.dim)
    ap.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    ap.add_argument("--scale", type=float, default=TrainSettings.scale)
    ap.add_argument("--heldout", type=float, default=0.3)
    ap.add_argument("--cache-dir", default=None, help="ONNX export cache to reuse")
    args = ap.parse_args()
    names = args.datasets.split(",")
    for name in names:
        if not (DATASETS / name).is_dir():
            sys.exit(f"dataset folder {DATASETS / name} is missing")
    settings = TrainSettings(dim=args.dim, epochs=args.epochs, scale=args.scale)
    summary = []
    with tempfile.TemporaryDirectory(prefix="semsearch-adapt-") as tmp:
        values = {"db": str(Path(tmp) / "a.db"),
                  "cache_dir": args.cache_dir or str(Path(tmp) / "cache")}
        if args.model:
            values["model"] = args.model
        with Session(resolve(values, env={})) as session:
            print(f"base feature set: {session.feature_set()}; {settings}; "
                  f"held out: {args.heldout:.0%} of each class")
            print(f"{'dataset':<11} {'train':>5} {'held':>5} {'wP@15 before':>12} {'after':>7} "
                  f"{'mAP before':>10} {'after':>7} {'gain':>7} {'NN before':>9} {'after':>6} "
                  f"{'train s':>8}")
            for name in names:
                started = time.perf_counter()
                result = adapt(session, str(DATASETS / name), name.replace("_", "-"),
                               heldout=args.heldout, settings=settings)
                b, a = result.before, result.after
                assert b is not None and a is not None
                print(f"{name:<11} {result.trained_on:5d} {result.heldout:5d} "
                      f"{b.weighted_p15:12.2f} {a.weighted_p15:7.2f} {b.map:10.3f} "
                      f"{a.map:7.3f} {a.map - b.map:+7.3f} {b.nn_accuracy:9.3f} "
                      f"{a.nn_accuracy:6.3f} {result.train_seconds:8.1f}"
                      f"   ({time.perf_counter() - started:.0f} s in all)")
                summary.append(f"{name}_heldout_map={b.map:.3f}->{a.map:.3f}")
    print(" ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
