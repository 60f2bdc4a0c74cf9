"""Approximate nearest-neighbour indexes named by FAISS factory strings ("HNSW32",
"IVF4096,Flat", "OPQ32_128,IVF4096,PQ32,RFlat"), for collections too big for exact search.

FAISS labels are row numbers in catalogue id order; `ids.npy` maps a row back to its image
id. A string ending in ",RFlat" re-ranks the candidates with the full vectors kept in a
memory-mapped file on disk (not FAISS's in-RAM refine), so a compressed index costs its codes
in RAM and still ranks by exact distance. IVF indexes are built shard by shard and can keep
their inverted lists on disk (FAISS on-disk inverted lists), so building and searching never
need every vector in memory at once."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import ConfigError, UnknownMetricError
from semsearch.index.exact import _top_k_smallest
from semsearch.index.metric import Metric
from semsearch.index.source import VectorSource
from semsearch.indexspec import REFINE_SUFFIX, IndexSpec

log = logging.getLogger(__name__)

# Approximate search ranks by these; minkowski has no FAISS index besides the flat one.
APPROX_METRICS = ("cosine", "ip", "euclidean", "sqeuclidean")
CHUNK = 65_536


def auto_spec(count: int, exact_max: int, dim: int = 0) -> IndexSpec:
    """Gives the index chosen for a collection of `count` vectors of `dim` dimensions: exact
    up to exact_max; above, about 4 sqrt(n) IVF lists (a power of two) holding 32-byte OPQ
    codes, re-ranked from the full vectors on disk (benchmarks/ann.py: recall@10 0.98 at
    3,000 queries/s on one thread, 43 bytes of RAM per vector, at a million 1280-d vectors);
    vectors shorter than 128 dimensions keep their full values in the lists."""
    if count <= exact_max:
        return IndexSpec("Flat")
    nlist = 2 ** round(math.log2(4 * math.sqrt(count)))
    if dim >= 128:
        return IndexSpec(f"OPQ32_128,IVF{nlist},PQ32{REFINE_SUFFIX}")
    return IndexSpec(f"IVF{nlist},Flat")


@dataclass(frozen=True)
class SearchParams:
    """Search-time knobs; 0 means chosen from the index (nprobe = nlist/128, at least 16;
    efSearch = 256; re-ranking reads max(16 k, 256) candidates). benchmarks/ann.py chose
    them: at a million vectors they give recall@10 >= 0.95 at over 1,500 queries/s."""

    nprobe: int = 0
    ef_search: int = 0
    refine_k: int = 0


def _faiss_metric(metric: Metric) -> int:
    import faiss

    if metric.name not in APPROX_METRICS:
        raise UnknownMetricError(
            f"approximate indexes rank by {', '.join(APPROX_METRICS)}; for {metric} use the "
            "exact index (--index Flat)")
    return int(faiss.METRIC_INNER_PRODUCT if metric.name in ("cosine", "ip")
               else faiss.METRIC_L2)


def _prepare(x: npt.NDArray[np.float32], metric: Metric) -> npt.NDArray[np.float32]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric.name == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
    return x


def _to_distance(raw: npt.NDArray[np.float32], metric: Metric) -> npt.NDArray[np.float32]:
    """Turns inner products or squared L2 into the metric's distance (smaller is closer)."""
    if metric.name == "cosine":
        out = np.maximum(1.0 - raw, 0.0)
    elif metric.name == "ip":
        out = -raw
    elif metric.name == "euclidean":
        out = np.sqrt(np.maximum(raw, 0.0))
    else:
        out = np.maximum(raw, 0.0)
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class BuiltFiles:
    """The files an approximate index is made of (names in the index folder)."""

    index: str
    ids: str
    ivfdata: str | None = None
    full: str | None = None

    def names(self) -> list[str]:
        return [n for n in (self.index, self.ids, self.ivfdata, self.full) if n]


class ApproximateIndex:
    """An approximate k-NN index keyed by image id (see the module docstring)."""

    exact = False

    def __init__(self, spec: IndexSpec, metric: Metric, faiss_index: Any,
                 ids: npt.NDArray[np.int64], full: npt.NDArray[np.float32] | None,
                 params: SearchParams = SearchParams()) -> None:
        self.spec = spec
        self.metric = metric
        self._index = faiss_index
        self.ids = ids
        self._full = full
        self.dim = int(faiss_index.d)
        self.params = params
        self.applied = self._apply(params)

    def __len__(self) -> int:
        return len(self.ids)

    def stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Raises KeyError: the vectors are not kept here to give back."""
        raise KeyError("this index keeps no vectors to give back")

    def subset(self, ids: npt.NDArray[np.int64]) -> None:
        """Gives None: a subset is searched by widening, capped (see the search service)."""
        return None

    def _apply(self, params: SearchParams) -> dict[str, int]:
        """Sets nprobe / efSearch on the index; gives the values in force."""
        import faiss

        applied: dict[str, int] = {}
        space = faiss.ParameterSpace()
        nlist = self.spec.nlist
        if nlist:
            nprobe = min(params.nprobe or max(16, nlist // 128), nlist)
            space.set_index_parameter(self._index, "nprobe", nprobe)
            applied["nprobe"] = nprobe
        if "HNSW" in self.spec.core:
            ef = params.ef_search or 256
            space.set_index_parameter(self._index, "efSearch", ef)
            applied["efSearch"] = ef
        return applied

    def candidates(self, k: int) -> int:
        """Gives how many candidates a search for k reads before re-ranking."""
        if not self.spec.refine:
            return k
        return max(k, self.params.refine_k or max(16 * k, 256))

    def search(self, queries: npt.NDArray[np.float32], k: int
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Gives (distances, ids) of about the k nearest stored vectors per query row,
        closest first; rows are shorter when fewer vectors are stored."""
        q = _prepare(np.atleast_2d(queries), self.metric)
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, index has {self.dim}")
        n = len(self.ids)
        k_eff = max(0, min(k, n))
        if k_eff == 0:
            return (np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64))
        # FAISS's HNSW search widens efSearch to k by itself; nothing shared is changed here,
        # so threads can search one index at once.
        want = min(self.candidates(k_eff), n)
        raw, rows = self._index.search(q, want)
        if self._full is not None:
            raw, rows = self._rerank(q, rows, k_eff)
        else:
            raw, rows = raw[:, :k_eff], rows[:, :k_eff]
        dist = (_to_distance(raw, self.metric) if self.metric.name != "ip"
                else np.asarray(-raw, np.float32))
        found = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)
        dist = np.where(rows >= 0, dist, np.inf).astype(np.float32)
        return dist, found.astype(np.int64)

    def _rerank(self, q: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Gives the k best of each query's candidates by exact distance to the full
        vectors, read from the memory-mapped file (inner products or squared L2)."""
        assert self._full is not None
        out_raw = np.full((len(q), k), np.nan, np.float32)
        out_rows = np.full((len(q), k), -1, np.int64)
        for i, cand in enumerate(rows):
            cand = cand[cand >= 0]
            if len(cand) == 0:
                continue
            order = np.argsort(cand)  # reading rows in file order is kinder to the disk
            vecs = np.asarray(self._full[cand[order]], np.float32)
            if self.metric.name in ("cosine", "ip"):
                keys = -(vecs @ q[i])
            else:
                diff = vecs - q[i]
                keys = np.einsum("ij,ij->i", diff, diff)
            top = _top_k_smallest(keys[None, :], min(k, len(cand)))[0]
            out_rows[i, :len(top)] = cand[order][top]
            out_raw[i, :len(top)] = -keys[top] if self.metric.name in ("cosine", "ip") \
                else keys[top]
        return out_raw, out_rows

    def ram_bytes(self) -> int:
        """Gives about how many bytes of RAM the index holds: its serialized size, which
        leaves out on-disk inverted lists, the id map and the full vectors (memory-mapped
        files)."""
        import faiss

        writer = faiss.VectorIOWriter()
        faiss.write_index(self._index, writer)
        return int(writer.data.size())

    # -- files --------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: Path, files: BuiltFiles, spec: IndexSpec, metric: Metric,
             params: SearchParams = SearchParams()) -> ApproximateIndex:
        import faiss

        # On-disk inverted lists are memory-mapped by themselves (and IO_FLAG_MMAP on such an
        # index crashes FAISS).
        index = faiss.read_index(os.fspath(folder / files.index))
        ids = np.load(folder / files.ids, mmap_mode="r")
        full = np.load(folder / files.full, mmap_mode="r") if files.full else None
        return cls(spec, metric, index, ids, full, params)


def _train_size(spec: IndexSpec, count: int) -> int:
    nlist = spec.nlist
    wanted = max(50_000, 64 * nlist) if nlist else 50_000
    return min(count, wanted, 500_000)


def build(source: VectorSource, spec: IndexSpec, metric: Metric, folder: Path, stem: str,
          *, on_disk: bool, params: SearchParams = SearchParams(),
          chunk: int = CHUNK) -> tuple[ApproximateIndex, BuiltFiles]:
    """Builds and saves an approximate index of the source's vectors; gives it and its files.
    IVF indexes are trained on a sample, filled one shard at a time and, if on_disk, merged
    into on-disk inverted lists."""
    import faiss

    if spec.exact:
        raise ValueError("the exact index is built by ExactIndex")
    index = _empty_index(spec, metric, source.count, source.dim)
    started = time.perf_counter()
    if not index.is_trained:
        sample = _prepare(source.sample(_train_size(spec, source.count)), metric)
        index.train(sample)
        del sample
    log.info("trained %s in %.1fs", spec, time.perf_counter() - started)
    folder.mkdir(parents=True, exist_ok=True)
    files = BuiltFiles(
        index=f"{stem}.index",
        ids=f"{stem}.ids.npy",
        ivfdata=f"{stem}.ivfdata" if spec.nlist and on_disk else None,
        full=f"{stem}.full.npy" if spec.refine else None,
    )
    for name in files.names():
        (folder / name).unlink(missing_ok=True)
    shards = _add_vectors(index, source, spec, metric, folder, files, stem, chunk)
    if files.ivfdata:
        from faiss.contrib.ondisk import merge_ondisk

        with _stdout_to_stderr():  # FAISS prints its progress on standard output
            merge_ondisk(index, [os.fspath(folder / s) for s in shards],
                         os.fspath(folder / files.ivfdata))
        for s in shards:
            (folder / s).unlink(missing_ok=True)
    faiss.write_index(index, os.fspath(folder / files.index))
    log.info("built %s over %d vectors in %.1fs", spec, source.count,
             time.perf_counter() - started)
    return ApproximateIndex.load(folder, files, spec, metric, params), files


def _empty_index(spec: IndexSpec, metric: Metric, count: int, dim: int) -> Any:
    """Gives the FAISS index the spec names, untrained and empty; raises ConfigError if it
    cannot be built for these vectors."""
    import faiss

    fmetric = _faiss_metric(metric)
    try:
        index = faiss.index_factory(dim, spec.core, fmetric)
    except RuntimeError as exc:
        raise ConfigError(f"index {spec} cannot be built for {dim}-dimensional vectors: "
                          f"{str(exc).strip().splitlines()[-1]}") from None
    nlist = spec.nlist
    if nlist and count < nlist:
        raise ConfigError(f"index {spec} needs at least {nlist} vectors to train its "
                          f"{nlist} lists; the feature set has {count}; use fewer lists or "
                          "Flat")
    return index


def _add_vectors(index: Any, source: VectorSource, spec: IndexSpec, metric: Metric,
                 folder: Path, files: BuiltFiles, stem: str, chunk: int) -> list[str]:
    """Adds the source's vectors to a trained index a chunk at a time, writing the id map
    and the full vectors (for re-ranking) as it goes; with on-disk lists each chunk becomes
    a shard file instead, whose names it gives (to be merged)."""
    import faiss

    n, d = source.count, source.dim
    ids_out = np.lib.format.open_memmap(folder / files.ids, mode="w+", dtype=np.int64,
                                        shape=(n,))
    full_out = (np.lib.format.open_memmap(folder / files.full, mode="w+", dtype=np.float32,
                                          shape=(n, d)) if files.full else None)
    shards: list[str] = []
    row = 0
    for shard_no, (chunk_ids, chunk_vecs) in enumerate(source.chunks(chunk)):
        x = _prepare(chunk_vecs, metric)
        rows = np.arange(row, row + len(x), dtype=np.int64)
        ids_out[row:row + len(x)] = chunk_ids
        if full_out is not None:
            full_out[row:row + len(x)] = x
        if files.ivfdata:
            shard = faiss.clone_index(index)
            shard.add_with_ids(x, rows)
            name = f"{stem}.shard{shard_no}.index"
            faiss.write_index(shard, os.fspath(folder / name))
            shards.append(name)
            del shard
        elif spec.nlist:
            index.add_with_ids(x, rows)
        else:
            index.add(x)  # HNSW and the like number rows in order of addition
        row += len(x)
    if row != n:
        raise RuntimeError(f"the catalogue changed while the index was built ({row} of {n})")
    ids_out.flush()
    if full_out is not None:
        full_out.flush()
    return shards


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Sends what C code writes on file descriptor 1 to 2 for a while, so a command's own
    output (JSON, say) stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def exact_neighbours(queries: npt.NDArray[np.float32], source: VectorSource, metric: Metric,
                     k: int, chunk: int = CHUNK) -> npt.NDArray[np.int64]:
    """Gives the exact k nearest ids of each query, streaming the source a chunk at a time
    (the ground truth recall is measured against)."""
    q = _prepare(queries, metric)
    best_keys = np.full((len(q), 0), np.inf, np.float32)
    best_ids = np.zeros((len(q), 0), np.int64)
    for chunk_ids, chunk_vecs in source.chunks(chunk):
        x = _prepare(chunk_vecs, metric)
        sims = q @ x.T
        if metric.name in ("cosine", "ip"):
            keys = -sims
        else:
            keys = np.einsum("ij,ij->i", x, x)[None, :] - 2.0 * sims
        keys = np.concatenate([best_keys, keys], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(chunk_ids, (len(q), len(chunk_ids)))],
                             axis=1)
        top = _top_k_smallest(keys, min(k, keys.shape[1]))
        best_keys = np.take_along_axis(keys, top, axis=1)
        best_ids = np.take_along_axis(ids, top, axis=1)
    return best_ids


def measure_recall(index: Callable[[npt.NDArray[np.float32], int], Any],
                   queries: npt.NDArray[np.float32], query_ids: npt.NDArray[np.int64],
                   truth: npt.NDArray[np.int64], k: int = 10) -> float:
    """Gives recall@k of a search function against exact neighbours (`truth`, k + 1 per
    query): the share of each query's true k nearest others that the search returns among
    its k nearest others. The query's own vector is left out of both lists."""
    _, found = index(queries, k + 1)
    hits = total = 0
    for qid, got, want in zip(query_ids, found, truth, strict=True):
        expected = [i for i in want if i != qid][:k]
        returned = {int(i) for i in got if i != qid and i >= 0}
        hits += sum(1 for i in expected if int(i) in returned)
        total += len(expected)
    return hits / total if total else 1.0
