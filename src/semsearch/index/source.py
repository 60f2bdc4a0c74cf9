"""A feature set's vectors as an index builder reads them: a page at a time in id order, or
a random sample, so an index can be built over more vectors than fit in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import numpy.typing as npt

from semsearch.store import Store


class VectorSource(Protocol):
    """A feature set's vectors, read in id order a chunk at a time."""

    @property
    def count(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def chunks(self, size: int) -> Iterator[tuple[npt.NDArray[np.int64],
                                                  npt.NDArray[np.float32]]]: ...

    def sample(self, n: int, seed: int = 0) -> npt.NDArray[np.float32]: ...


class StoreVectors:
    """The vectors of one feature set in a store (a `VectorSource`)."""

    def __init__(self, store: Store, fs_id: int) -> None:
        self.store = store
        self.fs_id = fs_id
        self._count = store.count_vectors(fs_id)
        self._dim = store.feature_set_dim(fs_id)

    @property
    def count(self) -> int:
        return self._count

    @property
    def dim(self) -> int:
        return self._dim

    def chunks(self, size: int) -> Iterator[tuple[npt.NDArray[np.int64],
                                                  npt.NDArray[np.float32]]]:
        after = -1
        while True:
            ids, vectors = self.store.vector_page(self.fs_id, after, size)
            if len(ids) == 0:
                return
            yield ids, vectors
            after = int(ids[-1])

    def sample_with_ids(self, n: int, rng: np.random.Generator
                        ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Gives (ids, vectors) of n vectors picked at random."""
        ids = self.store.vector_ids(self.fs_id)
        picked = np.sort(rng.choice(ids, size=min(n, len(ids)), replace=False))
        return self.store.vectors_of(self.fs_id, picked)

    def sample(self, n: int, seed: int = 0) -> npt.NDArray[np.float32]:
        return self.sample_with_ids(n, np.random.default_rng(seed))[1]
