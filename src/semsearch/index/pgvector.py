"""Nearest-neighbour search inside PostgreSQL: pgvector's HNSW index over one feature set's
vectors (a partial expression index per feature set and metric), queried with the metric's
operator. Vectors too long for a pgvector HNSW index are searched by an exact scan."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from semsearch.errors import UnknownMetricError
from semsearch.index.metric import Metric

if TYPE_CHECKING:
    from semsearch.store import FeatureSetRecord
    from semsearch.store.postgres import PostgresStore

PGVECTOR = "pgvector"


def check_metric(metric: Metric) -> None:
    from semsearch.store.postgres import OPERATORS

    if metric.name not in OPERATORS:
        raise UnknownMetricError(f"pgvector ranks by {', '.join(OPERATORS)}; for {metric} use "
                                 "the exact index (--index Flat)")


class PgVectorIndex:
    """A feature set's vectors in PostgreSQL, searched there (see the module docstring)."""

    exact = False

    def __init__(self, store: PostgresStore, record: FeatureSetRecord, metric: Metric,
                 ef_search: int = 0) -> None:
        check_metric(metric)
        self.store = store
        self.record = record
        self.metric = metric
        self.dim = record.dim
        self.ef_search = ef_search or 40
        self._count = store.count_vectors(record.id)
        self.hnsw = store.has_hnsw(record.id, metric.name)
        self.applied = {"hnsw.ef_search": self.ef_search} if self.hnsw else {}

    def __len__(self) -> int:
        return self._count

    def stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Raises KeyError: the vectors are not kept here to give back."""
        raise KeyError("this index keeps no vectors to give back")

    def subset(self, ids: npt.NDArray[np.int64]) -> None:
        """Gives None: a subset is searched by widening, capped (see the search service)."""
        return None

    def search(self, queries: npt.NDArray[np.float32], k: int
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Gives (distances, ids) of about the k nearest vectors per query row, closest
        first, in the metric's own distances."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, index has {self.dim}")
        k_eff = max(0, min(k, self._count))
        dist = np.full((len(q), k_eff), np.inf, np.float32)
        ids = np.full((len(q), k_eff), -1, np.int64)
        if k_eff == 0:
            return dist, ids
        for row, vector in enumerate(q):
            raw, found = self.store.nearest(self.record.id, self.dim, self.metric.name, vector,
                                            k_eff, self.ef_search)
            if self.metric.name == "sqeuclidean":
                raw = raw ** 2
            elif self.metric.name == "cosine":
                raw = np.maximum(raw, 0.0)
            dist[row, :len(found)] = raw
            ids[row, :len(found)] = found
        return dist, ids
