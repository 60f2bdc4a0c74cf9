"""The feature sets and their vectors in the catalogue: which sets exist and at which version,
and the vectors of a set read whole, by page, by folder or by image, or added for images
already stored. A part of `Store`, on its connection."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import NotIndexedError, StoreError
from semsearch.featureset import FeatureSet
from semsearch.store.records import FeatureSetRecord
from semsearch.store.sql import PUT_VECTOR, StorePart, prefix_bounds


class VectorRows(StorePart):
    """Feature sets and vectors: the Store methods that keep and read them."""

    # -- feature sets -------------------------------------------------------------------------

    def ensure_feature_set(self, fs: FeatureSet, preprocessing: str, dim: int) -> FeatureSetRecord:
        """Gives the stored feature set, adding it if new."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO feature_sets(name, model, layer, pooling, preprocessing,"
                " dim, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name, preprocessing) DO NOTHING",
                (str(fs), fs.model, fs.layer, fs.pooling, preprocessing, dim, time.time()),
            )
        record = self.feature_set(fs, preprocessing)
        if record.dim != dim:
            raise StoreError(
                f"feature set {fs} is stored with {record.dim} dimensions but the model now "
                f"gives {dim}; remove the catalogue's vectors for it or use another --db"
            )
        return record

    def _feature_set_rows(
        self, where: str = "", args: Sequence[object] = ()
    ) -> list[FeatureSetRecord]:
        rows = self._read(
            "SELECT f.id, f.name, f.preprocessing, f.dim, f.version"
            f" FROM feature_sets f {where} ORDER BY f.id",
            args,
        )
        return [FeatureSetRecord(r[0], FeatureSet.parse(r[1]), r[2], r[3], r[4]) for r in rows]

    def version(self, fs_id: int) -> int:
        """Gives a feature set's current version (one indexed lookup)."""
        rows = self._read("SELECT version FROM feature_sets WHERE id = ?", (fs_id,))
        row = rows[0] if rows else None
        if row is None:
            raise NotIndexedError(f"feature set {fs_id} is no longer in the catalogue")
        return int(row[0])

    def count_vectors(self, fs_id: int) -> int:
        return int(self._read(
            "SELECT COUNT(*) FROM vectors WHERE feature_set_id = ?", (fs_id,))[0][0])

    def vector_counts_under(self, root: str) -> dict[int, int]:
        """Gives, per feature set id, how many images at or below root have its vector."""
        low, high = prefix_bounds(root)
        rows = self._read(
            "SELECT v.feature_set_id, COUNT(*) FROM vectors v JOIN images i ON i.id = v.image_id"
            " WHERE i.path = ? OR (i.path >= ? AND i.path < ?) GROUP BY v.feature_set_id",
            (root.rstrip(os.sep), low, high))
        return {int(r[0]): int(r[1]) for r in rows}

    def feature_sets(self) -> list[FeatureSetRecord]:
        return self._feature_set_rows()

    def feature_set(self, fs: FeatureSet, preprocessing: str | None = None) -> FeatureSetRecord:
        """Gives the stored feature set, or raises NotIndexedError."""
        if preprocessing is None:
            rows = self._feature_set_rows("WHERE f.name = ?", (str(fs),))
        else:
            rows = self._feature_set_rows(
                "WHERE f.name = ? AND f.preprocessing = ?", (str(fs), preprocessing)
            )
        if not rows:
            known = ", ".join(r.name for r in self.feature_sets()) or "none yet"
            raise NotIndexedError(
                f"nothing is indexed with {fs}; indexed feature sets: {known}"
            )
        return rows[-1]

    # -- vectors ------------------------------------------------------------------------------

    def image_ids_with_vectors(self, fs_id: int) -> set[int]:
        rows = self._read("SELECT image_id FROM vectors WHERE feature_set_id = ?", (fs_id,))
        return {r[0] for r in rows}

    def vectors(self, fs_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Gives (image ids, float32 matrix) of every vector in the feature set, by image id."""
        dim = self._dim(fs_id)
        rows = self._read(
            "SELECT image_id, vector FROM vectors WHERE feature_set_id = ? ORDER BY image_id",
            (fs_id,),
        )
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, self._vector_matrix([r[1] for r in rows], dim)

    def vectors_under(self, fs_id: int, root: str
                      ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Gives (image ids, matrix) of the feature set's vectors of images at or below root,
        by image id, without reading the rest of the catalogue."""
        dim = self._dim(fs_id)
        low, high = prefix_bounds(root)
        rows = self._read(
            "SELECT v.image_id, v.vector FROM vectors v JOIN images i ON i.id = v.image_id"
            " WHERE v.feature_set_id = ? AND (i.path = ? OR (i.path >= ? AND i.path < ?))"
            " ORDER BY v.image_id", (fs_id, root.rstrip(os.sep), low, high))
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, self._vector_matrix([r[1] for r in rows], dim)

    def vector_page(self, fs_id: int, after: int, limit: int
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Gives (image ids, matrix) of up to `limit` vectors of the feature set whose image
        ids come after `after`, by image id: a feature set read a page at a time."""
        dim = self._dim(fs_id)
        rows = self._read(
            "SELECT image_id, vector FROM vectors WHERE feature_set_id = ? AND image_id > ?"
            " ORDER BY image_id LIMIT ?", (fs_id, after, limit))
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, self._vector_matrix([r[1] for r in rows], dim)

    def vector_ids(self, fs_id: int) -> npt.NDArray[np.int64]:
        """Gives the image ids that have the feature set's vector, in order."""
        rows = self._read("SELECT image_id FROM vectors WHERE feature_set_id = ?"
                          " ORDER BY image_id", (fs_id,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors_of(self, fs_id: int, image_ids: npt.NDArray[np.int64]
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Gives (image ids, matrix) of the feature set's vectors of the given images that
        have one, by image id."""
        dim = self._dim(fs_id)
        wanted = sorted({int(i) for i in image_ids})
        found: list[Any] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.extend(self._read(
                f"SELECT image_id, vector FROM vectors WHERE feature_set_id = ?"
                f" AND image_id IN ({marks}) ORDER BY image_id", (fs_id, *chunk)))
        ids = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
        return ids, self._vector_matrix([r[1] for r in found], dim)

    def vector(self, fs_id: int, image_id: int) -> npt.NDArray[np.float32] | None:
        rows = self._read(
            "SELECT vector FROM vectors WHERE feature_set_id = ? AND image_id = ?",
            (fs_id, image_id),
        )
        return self._vector_matrix([rows[0][0]], self._dim(fs_id))[0] if rows else None

    def feature_set_dim(self, fs_id: int) -> int:
        """Gives a feature set's vector length, or raises NotIndexedError."""
        return self._dim(fs_id)

    def _dim(self, fs_id: int) -> int:
        rows = self._read("SELECT dim FROM feature_sets WHERE id = ?", (fs_id,))
        if not rows:
            raise NotIndexedError(f"feature set {fs_id} is no longer in the catalogue")
        return int(rows[0][0])

    def add_vectors(self, fs_id: int, image_ids: npt.NDArray[np.int64],
                    vectors: npt.NDArray[np.float32]) -> None:
        """Stores vectors of one feature set for images already in the catalogue, in one
        transaction."""
        dim = self._dim(fs_id)
        matrix = np.ascontiguousarray(vectors, np.float32)
        if matrix.shape != (len(image_ids), dim) or not np.isfinite(matrix).all():
            raise ValueError(f"vectors of shape {matrix.shape} with non-finite values or not "
                             f"of length {dim}")
        with self._transaction() as conn:
            conn.executemany(
                PUT_VECTOR, [(fs_id, int(i), self._vector_param(row))
                              for i, row in zip(image_ids, matrix, strict=True)])
            self._bump(conn, [fs_id])

    @staticmethod
    def _bump(conn: sqlite3.Connection, fs_ids: Iterable[int]) -> None:
        conn.executemany(
            "UPDATE feature_sets SET version = version + 1 WHERE id = ?",
            [(i,) for i in fs_ids],
        )
