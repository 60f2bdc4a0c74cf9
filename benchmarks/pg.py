"""pgvector's HNSW inside PostgreSQL against FAISS HNSW in process, on the same 100,000
vectors (dim 1280, cosine): recall@10 against exact search, per-query latency (p50, p95) and
build time, both measured through the product (`PostgresStore` + `PgVectorIndex`, and
`ApproximateIndex` "HNSW16", the same graph degree as pgvector's m=16), in the same run.

Vectors are those of benchmarks/ann.py (real lite0 features of the shared images and their
crops, plus the documented synthetic model of them; see benchmarks/ann_data.py); queries are
real views of held-out images. PostgreSQL 16 + pgvector is the one the `pgserver` package
bundles, started in a temporary folder, unless --db points at another server.

Run:  python benchmarks/pg.py                (100k vectors; about 15 minutes on 2 cores)
      python benchmarks/pg.py --n 20000      (quick)
The last line is `pgvector_recall=.. pgvector_p50_ms=.. faiss_recall=.. faiss_p50_ms=..
latency_ratio=..` at ef_search=100 (latency_ratio = pgvector p50 / FAISS p50).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

import ann_data  # next to this file
from ann import CROPS, PER_IMAGE, K, one_thread, recall_at_k
from semsearch.featureset import FeatureSet
from semsearch.index import approx
from semsearch.index.approx import SearchParams
from semsearch.index.exact import ExactIndex
from semsearch.index.metric import Metric
from semsearch.index.pgvector import PgVectorIndex
from semsearch.indexspec import IndexSpec
from semsearch.store import NewImage
from semsearch.store.postgres import PostgresStore

Array = npt.NDArray[np.float32]
EFS = (40, 100, 200)


def load(store: PostgresStore, data: Array, batch: int = 2000) -> tuple[int, float]:
    """Writes the vectors into the catalogue as images 1..n; gives (feature set id, s)."""
    t0 = time.perf_counter()
    fs = store.ensure_feature_set(FeatureSet("lite0", "_head_act", "gem"), "bench", data.shape[1])
    for lo in range(0, len(data), batch):
        rows = np.asarray(data[lo:lo + batch], np.float32)
        store.write_batch([NewImage(f"/bench/{lo + i:07d}.jpg", 1, 1, f"{lo + i:064x}", 1, 1,
                                    "x", {fs.id: rows[i]}) for i in range(len(rows))])
    return fs.id, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/semsearch-ann"),
                    help="where benchmarks/ann.py caches the real vectors")
    ap.add_argument("--db", default=None, help="a postgresql:// URL (default: a pgserver)")
    args = ap.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    path, queries, _ = ann_data.views_database(work, args.n, args.queries, CROPS, PER_IMAGE)
    data = np.load(path, mmap_mode="r")
    metric = Metric("cosine")
    ids = np.arange(1, args.n + 1, dtype=np.int64)  # the catalogue numbers images from 1
    exact = ExactIndex.build(np.asarray(data), ids, metric)
    _, truth = exact.search(queries, K)
    print(f"{args.n:,} vectors x {data.shape[1]}, {len(queries)} held-out real queries, "
          f"cosine, k={K}")

    server = None
    tmp = Path(tempfile.mkdtemp(prefix="semsearch-pg-"))
    url = args.db
    if url is None:
        import pgserver

        server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
        url = server.get_uri()
    try:
        with PostgresStore.open_url(url, index_root=tmp / "cache") as store:
            fs_id, load_s = load(store, data)
            print(f"PostgreSQL: {args.n:,} vectors written in {load_s:.0f} s "
                  f"({args.n / load_s:,.0f}/s, batches of 2,000)")
            record = store.feature_sets()[-1]
            t0 = time.perf_counter()
            store.ensure_hnsw(fs_id, record.dim, "cosine")
            pg_build = time.perf_counter() - t0
            plan = store.explain_nearest(fs_id, record.dim, "cosine")
            print(f"pgvector HNSW (m=16, ef_construction=64) built in {pg_build:.0f} s; plan "
                  f"uses it: {store.hnsw_index_name(fs_id, 'cosine') in plan}")
            t0 = time.perf_counter()
            source = ann_data.MemmapVectors(path)
            faiss_index, _ = approx.build(source, IndexSpec.parse("HNSW16"), metric,
                                          tmp / "faiss", "hnsw", on_disk=False)
            faiss_build = time.perf_counter() - t0
            print(f"FAISS HNSW16 (efConstruction 40) built in {faiss_build:.0f} s "
                  f"({faiss_index.ram_bytes() / args.n:,.0f} B/vector)")
            print(f"\n{'index':<22}{'ef_search':>10}{'recall@10':>11}{'p50 ms':>9}"
                  f"{'p95 ms':>9}{'qps':>8}")
            results = {}
            for ef in EFS:
                pg = PgVectorIndex(store, record, metric, ef_search=ef)
                t, found = ann_data.latencies(pg.search, queries, K)
                results[("pg", ef)] = (recall_at_k(found, truth), np.median(t) * 1e3)
                print(f"{'pgvector HNSW':<22}{ef:>10}{results[('pg', ef)][0]:>11.3f}"
                      f"{np.median(t) * 1e3:>9.2f}{np.percentile(t, 95) * 1e3:>9.2f}"
                      f"{len(t) / t.sum():>8.0f}")
                fi = approx.ApproximateIndex.load(tmp / "faiss", _files(tmp), faiss_index.spec,
                                                  metric, SearchParams(ef_search=ef))
                with one_thread():
                    t, found_rows = ann_data.latencies(fi.search, queries, K)
                found = found_rows + 1  # the FAISS source numbered rows from 0
                results[("faiss", ef)] = (recall_at_k(found, truth), np.median(t) * 1e3)
                print(f"{'FAISS HNSW16, 1 thread':<22}{ef:>10}"
                      f"{results[('faiss', ef)][0]:>11.3f}{np.median(t) * 1e3:>9.2f}"
                      f"{np.percentile(t, 95) * 1e3:>9.2f}{len(t) / t.sum():>8.0f}")
    finally:
        if server is not None:
            server.cleanup()
    pg_r, pg_ms = results[("pg", 100)]
    f_r, f_ms = results[("faiss", 100)]
    print("\npgvector's latency includes a round trip to the server over a Unix socket and "
          "the query vector's transfer; FAISS runs in the searching process.")
    print(f"pgvector_recall={pg_r:.3f} pgvector_p50_ms={pg_ms:.2f} faiss_recall={f_r:.3f} "
          f"faiss_p50_ms={f_ms:.2f} latency_ratio={pg_ms / f_ms:.1f}")
    return 0


def _files(tmp: Path) -> approx.BuiltFiles:
    return approx.BuiltFiles(index="hnsw.index", ids="hnsw.ids.npy")


if __name__ == "__main__":
    sys.exit(main())
