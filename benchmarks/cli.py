"""Command-line start-up: the wall time of `semsearch --help`, `semsearch info` and
`semsearch search id:N` on an indexed iconic200, against `python -c pass` measured in the
same run (what any Python command costs on this machine).

iconic200 (200 images, ../shared/datasets/iconic200) is indexed once into a temporary
catalogue with the default settings, as a new user's first `semsearch index` would (the
three bundled models, lite0+lite1+lite2@_head_act/gem, with expansion); `--model lite0`
indexes and searches with lite0 alone. The ONNX graphs go to the usual cache folder (or
--cache-dir), so they are exported once, on the first run. Every command then runs once
to warm the file cache, then --runs times, interleaved so that a busy moment of a shared
machine falls on all of them alike; each figure is the median.

Each command is a fresh `python -m semsearch ...` (the `semsearch` script does the same);
the benchmark imports nothing of semsearch, so it times whichever version is on the path:
    PYTHONPATH=/path/to/other/src python benchmarks/cli.py

Run:  python benchmarks/cli.py    (about a minute on 2 cores, most of it indexing)
Last line: `help_s=<a> search_id_s=<b> python_s=<c>` (info_s on the line before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "iconic200"


def run(argv: list[str], env: dict[str, str]) -> float:
    """Gives the wall seconds of one command; a failed command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    ap.add_argument("--model", default=None, help="index and search with this model "
                    "(default: the default settings' lite0+lite1+lite2)")
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--cache-dir", default=None, help="ONNX export cache (default: the "
                    "user cache folder)")
    args = ap.parse_args()
    if not args.dataset.is_dir():
        sys.exit(f"no dataset at {args.dataset}")
    with tempfile.TemporaryDirectory(prefix="semsearch-cli-") as tmp:
        (Path(tmp) / "none.toml").write_text("")
        # Only the catalogue (and the model, if asked) differ from a user's defaults.
        env = {**os.environ, "SEMSEARCH_CONFIG": str(Path(tmp) / "none.toml"),
               "SEMSEARCH_DB": str(Path(tmp) / "cat.db")}
        if args.model:
            env["SEMSEARCH_MODEL"] = args.model
        if args.cache_dir:
            env["SEMSEARCH_CACHE_DIR"] = args.cache_dir
        semsearch = [sys.executable, "-m", "semsearch"]
        seconds = run([*semsearch, "index", str(args.dataset), "-q"], env)
        print(f"indexed {args.dataset} in {seconds:.1f}s with "
              f"{'--model ' + args.model if args.model else 'the default settings'}")
        commands = {
            "help": [*semsearch, "--help"],
            "info": [*semsearch, "info"],
            "search_id": [*semsearch, "search", "id:1"],
            "python": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():
            run(argv, env)  # warm-up
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(run(argv, env))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<10} median {median[name]:.3f}s  min {min(values):.3f}s  "
              f"max {max(values):.3f}s  ({args.runs} runs)")
    print(f"info_s={median['info']:.3f}")
    print(f"help_s={median['help']:.3f} search_id_s={median['search_id']:.3f} "
          f"python_s={median['python']:.3f}")


if __name__ == "__main__":
    main()
