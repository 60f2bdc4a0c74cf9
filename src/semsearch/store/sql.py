"""SQL pieces every part of the Store uses, and what those parts stand on."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

PUT_VECTOR = ("INSERT INTO vectors(feature_set_id, image_id, vector) VALUES (?, ?, ?)"
              " ON CONFLICT(feature_set_id, image_id) DO UPDATE SET vector = excluded.vector")


def prefix_bounds(root: str) -> tuple[str, str]:
    """Gives the bounds (low inclusive, high exclusive) of the paths strictly below root, for
    a range query on an indexed column."""
    prefix = root.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


class StorePart:
    """The base of the parts `Store` is made of (images, vectors, saved results): what they use
    of the Store and of each other, declared once for the type checker. At run time it is
    empty, so each method has its one home and the PostgreSQL store overrides it as before."""

    if TYPE_CHECKING:
        # The connection, and how vectors travel over it: the Store and the PostgreSQL store.
        def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]: ...

        def _transaction(self) -> AbstractContextManager[Any]: ...

        @staticmethod
        def _vector_param(vector: npt.NDArray[np.float32]) -> Any: ...

        @staticmethod
        def _vector_matrix(values: Sequence[Any], dim: int) -> npt.NDArray[np.float32]: ...

        # Feature sets' lengths and versions: the vector part.
        def _dim(self, fs_id: int) -> int: ...

        @staticmethod
        def _bump(conn: Any, fs_ids: Iterable[int]) -> None: ...
