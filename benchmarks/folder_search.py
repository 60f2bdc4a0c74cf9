"""Searching one small collection of a catalogue that holds others with the same feature set.

iconic200 (200 images) and the Caltech-101 subset (3,030) are indexed into one catalogue
with the bundled lite0 model; every iconic200 image is then a query, searched within its
own folder (k=15, as the web page asks), two ways, in the same run:
* baseline: the whole feature set's exact index, widened until 15 hits lie in the folder;
* the folder's own exact index (what the search uses when a folder holds under half of
  its index's images, at most 50,000).
Both must give the same hits.

Run:  python benchmarks/folder_search.py      (about 2 minutes on 2 cores, most of it indexing)
Last line: `widened_p50_ms=<x> own_index_p50_ms=<y> speedup=<r>`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semsearch.config import resolve
from semsearch.images import real_path
from semsearch.query import service as search_module
from semsearch.query.service import KnownImageQuery
from semsearch.session import Session

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def timed(session: Session, ids: list[int], folder: str) -> tuple[list[float], list[list[int]]]:
    service = session.search_service()
    record = session.indexed_feature_set(None)
    metric = session.metric()
    times, hits = [], []
    for image_id in ids:
        started = time.perf_counter()
        result = service.search(KnownImageQuery(image_id), feature_set=record, metric=metric,
                                k=15, within=folder)
        times.append((time.perf_counter() - started) * 1000)
        hits.append([h.image_id for h in result.hits])
    return times, hits


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve({"db": str(Path(tmp) / "cat.db"), "model": "lite0",
                          "expand_k": 0}, env={})
        with Session(config) as session:
            for name in ("caltech101", "iconic200"):
                session.index(str(DATASETS / name))
            folder = real_path(DATASETS / "iconic200")  # as the catalogue stores it
            ids = sorted(r.id for r in session.store.images_under(folder).values())
            timed(session, ids[:20], folder)  # warm: index and folder index loaded
            own, own_hits = timed(session, ids, folder)
            search_module.WITHIN_MAX = 0
            widened, widened_hits = timed(session, ids, folder)
    if own_hits != widened_hits:
        print("the two ways gave different hits", file=sys.stderr)
        return 1
    p50w, p50o = statistics.median(widened), statistics.median(own)
    p99w, p99o = (float(np.percentile(widened, 99)), float(np.percentile(own, 99)))
    print(f"{len(ids)} searches of iconic200 in a catalogue of {len(ids) + 3030} images, k=15")
    print(f"  widened over the whole index (baseline): p50 {p50w:.2f} ms, p99 {p99w:.2f} ms")
    print(f"  the folder's own index:                  p50 {p50o:.2f} ms, p99 {p99o:.2f} ms")
    print(f"widened_p50_ms={p50w:.2f} own_index_p50_ms={p50o:.2f} speedup={p50w / p50o:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
