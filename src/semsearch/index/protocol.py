"""What every vector index offers the search service, whatever holds the vectors: FAISS
flat (exact), FAISS approximate, or pgvector inside PostgreSQL."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from semsearch.index.metric import Metric


class VectorIndex(Protocol):
    """k-nearest-neighbour search keyed by image id. `exact` says whether a search ranks
    every vector (so asking for many costs no more than the collection); an approximate
    index answers a wide request by walking further, which costs more than it gives."""

    metric: Metric

    @property
    def exact(self) -> bool: ...

    def __len__(self) -> int: ...

    def search(self, queries: npt.NDArray[np.float32], k: int
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Gives (distances, ids) of the k nearest per query row, closest first; missing
        neighbours have id -1."""
        ...

    def stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Gives the vectors the index holds for ids; KeyError if it keeps none to give."""
        ...

    def subset(self, ids: npt.NDArray[np.int64]) -> VectorIndex | None:
        """Gives an index of just these ids, or None if this kind cannot make one."""
        ...
