"""Exact (brute-force) search on a FAISS flat index, for every supported metric.

Vectors live in a FAISS IndexFlat (which also gives the on-disk format). Batches of queries
go through FAISS; a single query against inner-product or L2 indexes is answered by a BLAS
matrix-vector product over the same memory, which is about twice as fast as FAISS's
one-query path on these machines and gives the same ranking."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.index.metric import Metric

_BLAS_MAX_QUERIES = 8


def _l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class ExactIndex:
    """Brute-force k-nearest-neighbour search keyed by image id."""

    exact = True

    def __init__(self, metric: Metric, faiss_index: Any) -> None:
        import faiss

        self.metric = metric
        self._index = faiss_index
        idmap: Any = faiss.downcast_index(faiss_index)
        flat: Any = faiss.downcast_index(idmap.index)
        self._flat = flat
        self.ids: npt.NDArray[np.int64] = faiss.vector_to_array(idmap.id_map).astype(np.int64)
        n, d = int(flat.ntotal), int(flat.d)
        self.dim = d
        # A view on FAISS's own storage; it lives as long as self._index.
        self._xb = (faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
                    if n else np.zeros((0, d), np.float32))
        self._sq_norms = (np.einsum("ij,ij->i", self._xb, self._xb)
                          if metric.name in ("euclidean", "sqeuclidean") else None)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def vectors(self) -> npt.NDArray[np.float32]:
        """Gives the stored vectors (normalized, for cosine), a view on FAISS's storage."""
        return self._xb

    def stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Gives the stored vectors (normalized, for cosine) of the given ids."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Indexes are built from the catalogue in id order, so ids are sorted.
        rows = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        if len(self.ids) == 0 or not np.array_equal(self.ids[rows], ids):
            missing = sorted(set(ids.tolist()) - set(self.ids.tolist()))[:5]
            raise KeyError(f"ids not in the index: {missing}")
        return np.asarray(self._xb[rows], dtype=np.float32)

    def subset(self, ids: npt.NDArray[np.int64]) -> ExactIndex:
        """Gives an index of the given ids' stored vectors (those of them this index holds),
        searched the same way."""
        present = np.intersect1d(np.asarray(ids, dtype=np.int64), self.ids)
        return ExactIndex.build(self.stored(present), present, self.metric)

    @classmethod
    def build(
        cls, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], metric: Metric
    ) -> ExactIndex:
        """Gives an index over the vectors, which are labelled with the given ids."""
        import faiss

        x = np.ascontiguousarray(vectors, dtype=np.float32)
        d = x.shape[1]
        if metric.name == "cosine":
            x = _l2_normalize(x)
        flat: Any
        if metric.name in ("cosine", "ip"):
            flat = faiss.IndexFlatIP(d)
        elif metric.name in ("euclidean", "sqeuclidean"):
            flat = faiss.IndexFlatL2(d)
        else:
            flat = faiss.IndexFlat(d, faiss.METRIC_Lp)
            flat.metric_arg = float(metric.p)
        idmap = faiss.IndexIDMap(flat)
        if len(x):
            idmap.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
        return cls(metric, idmap)

    def save(self, path: str | os.PathLike[str]) -> None:
        import faiss

        faiss.write_index(self._index, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], metric: Metric) -> ExactIndex:
        import faiss

        return cls(metric, faiss.read_index(os.fspath(path)))

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Gives (distances, ids) of the k nearest stored vectors for each query row, closest
        first; with fewer than k vectors stored, the rows are that much shorter."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, index has {self.dim}")
        if self.metric.name == "cosine":
            q = _l2_normalize(q)
        nq, n = len(q), len(self.ids)
        k_eff = max(0, min(k, n))
        dist = np.full((nq, k_eff), np.inf, dtype=np.float32)
        ids = np.full((nq, k_eff), -1, dtype=np.int64)
        if k_eff == 0:
            return dist, ids
        if self.metric.name == "minkowski":
            raw, rows = self._search_lp(q, k_eff)
            found = self.ids[rows]
        elif nq <= _BLAS_MAX_QUERIES:
            raw, rows = self._search_blas(q, k_eff)
            found = self.ids[rows]
        else:
            raw, found = self._index.search(q, k_eff)
        dist[:, :k_eff] = self._to_distance(raw)
        ids[:, :k_eff] = found
        return dist, ids

    def _search_blas(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
        sims = q @ self._xb.T  # (nq, n)
        if self._sq_norms is not None:
            # Rank by |x|^2 - 2 q.x; |q|^2 is added back in _to_distance.
            keys = self._sq_norms[None, :] - 2.0 * sims
        else:
            keys = -sims
        rows = _top_k_smallest(keys, k)
        picked = np.take_along_axis(keys, rows, axis=1)
        if self._sq_norms is not None:
            raw = picked + np.einsum("ij,ij->i", q, q)[:, None]
        else:
            raw = -picked
        return raw.astype(np.float32), rows

    def _search_lp(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
        import faiss

        # FAISS answers one query on one thread; split the database across cores.
        n = len(self._xb)
        parts = max(1, min(os.cpu_count() or 1, n // 4096))
        bounds = np.linspace(0, n, parts + 1).astype(int)

        def chunk(i: int) -> npt.NDArray[np.float32]:
            lo, hi = bounds[i], bounds[i + 1]
            return faiss.pairwise_distances(q, self._xb[lo:hi], faiss.METRIC_Lp, self.metric.p)

        if parts == 1:
            sums = chunk(0)
        else:
            with ThreadPoolExecutor(parts) as pool:
                sums = np.concatenate(list(pool.map(chunk, range(parts))), axis=1)
        rows = _top_k_smallest(sums, k)
        return np.take_along_axis(sums, rows, axis=1).astype(np.float32), rows

    def _to_distance(self, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Turns FAISS's raw values (inner products, squared L2, sum of |d|^p) into the
        metric's distance."""
        name = self.metric.name
        if name == "cosine":
            out = np.maximum(1.0 - raw, 0.0)  # rounding can put 1 - cos just below 0
        elif name == "ip":
            out = -raw
        elif name == "euclidean":
            out = np.sqrt(np.maximum(raw, 0.0))
        elif name == "sqeuclidean":
            out = np.maximum(raw, 0.0)
        else:
            out = np.power(np.maximum(raw, 0.0), 1.0 / self.metric.p)
        return np.asarray(out, dtype=np.float32)


def _top_k_smallest(keys: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    """Gives, per row, the column indices of the k smallest keys in ascending order."""
    n = keys.shape[1]
    if k < n:
        part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(n), (len(keys), 1))
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class Calibration:
    """Maps a distance to a similarity score in [0, 1] relative to the gallery's own spread:
    a typical (median) pair of gallery images scores 0.5 and the closest 5 % of pairs score
    0.95 or more, whatever the metric, so scores are comparable across metrics. For true
    distances (>= 0) the curve is log-logistic, so distance 0 scores exactly 1; for the
    negated inner product, which has no zero, it is logistic."""

    center: float
    low: float
    log_form: bool

    def scores(self, distances: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        d: npt.NDArray[np.float64] = np.asarray(distances, dtype=np.float64)
        if self.log_form:
            gamma = math.log(19.0) / math.log(self.center / self.low)
            ratio = np.maximum(d, 0.0) / self.center
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.power(ratio, gamma))
        scale = (self.center - self.low) / math.log(19.0)
        z = np.clip((d - self.center) / scale, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(z))


def calibration(index: ExactIndex, vectors: npt.NDArray[np.float32], sample: int = 256,
                seed: int = 0) -> Calibration:
    """Gives the score calibration of a gallery from the distances between a random sample
    of its vectors."""
    log_form = index.metric.name != "ip"
    n = len(vectors)
    pairs: npt.NDArray[Any] = np.zeros(0)
    if n >= 3:
        rng = np.random.default_rng(seed)
        pick = rng.choice(n, size=min(n, sample), replace=False)
        probe = ExactIndex.build(vectors[pick], np.arange(len(pick), dtype=np.int64),
                                 index.metric)
        dist, _ = probe.search(vectors[pick], len(pick))
        pairs = dist[:, 1:].ravel()  # column 0 is each vector's distance to itself
        pairs = pairs[np.isfinite(pairs)]
    if len(pairs) == 0:
        return Calibration(1.0, 0.25, log_form)
    center = float(np.median(pairs))
    low = float(np.percentile(pairs, 5))
    if log_form:
        center = max(center, 1e-12)
        low = min(max(low, center * 1e-3), center * 0.999)
    elif not low < center:
        low = center - max(abs(center), 1.0) * 0.05
    return Calibration(center, low, log_form)
