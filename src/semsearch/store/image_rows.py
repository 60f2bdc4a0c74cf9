"""The images in the catalogue: found by path, folder, id or content hash; a batch of new and
moved images written with their vectors; images removed with their vectors. A part of
`Store`, on its connection."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from semsearch.errors import NotIndexedError
from semsearch.store.records import ImageRecord, Move, NewImage
from semsearch.store.sql import PUT_VECTOR, StorePart, prefix_bounds


class ImageRows(StorePart):
    """Images: the Store methods that find, write, move and remove them."""

    def _image_rows(self, where: str, args: Sequence[object]) -> list[ImageRecord]:
        rows = self._read(
            "SELECT id, path, size, mtime_ns, sha256, width, height, label FROM images "
            + where,
            args,
        )
        return [ImageRecord(*row) for row in rows]

    def images_under(self, root: str) -> dict[str, ImageRecord]:
        """Gives the stored images at or below the absolute path root, by path."""
        low, high = prefix_bounds(root)
        rows = self._image_rows(
            "WHERE path = ? OR (path >= ? AND path < ?)", (root.rstrip(os.sep), low, high)
        )
        return {row.path: row for row in rows}

    def ids_under(self, root: str) -> npt.NDArray[np.int64]:
        """Gives the ids of the stored images at or below the absolute path root, sorted."""
        low, high = prefix_bounds(root)
        rows = self._read("SELECT id FROM images WHERE path = ? OR (path >= ? AND path < ?) "
                          "ORDER BY id", (root.rstrip(os.sep), low, high))
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def images_with_shas(self, shas: Sequence[str]) -> dict[str, list[ImageRecord]]:
        """Gives the stored images with each of the given content hashes."""
        found: dict[str, list[ImageRecord]] = {}
        unique = list(dict.fromkeys(shas))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._image_rows(f"WHERE sha256 IN ({marks}) ORDER BY id", chunk):
                found.setdefault(row.sha256, []).append(row)
        return found

    def image(self, image_id: int) -> ImageRecord:
        rows = self._image_rows("WHERE id = ?", (image_id,))
        if not rows:
            raise NotIndexedError(f"no image with id {image_id} in the catalogue")
        return rows[0]

    def image_by_path(self, path: str) -> ImageRecord | None:
        rows = self._image_rows("WHERE path = ?", (path,))
        return rows[0] if rows else None

    def images(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        wanted = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._image_rows(f"WHERE id IN ({marks})", chunk):
                found[row.id] = row
        return found

    def count_images(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM images")[0][0])

    # -- writing, moving and removing ---------------------------------------------------------

    def write_batch(self, new: Sequence[NewImage], moves: Sequence[Move] = ()) -> None:
        """Stores a batch of new images with their vectors, and moved images, in one
        transaction."""
        now = time.time()
        touched_sets: set[int] = set()
        wanted = sorted({fs_id for item in new for fs_id in item.vectors})
        dims = {fs_id: self._dim(fs_id) for fs_id in wanted}
        with self._transaction() as conn:
            for move in moves:
                touched_sets |= self._repoint(conn, move.image_id, move.path, move.size,
                                              move.mtime_ns, move.label)
            for item in new:
                if item.replaces is not None:
                    image_id = item.replaces
                    touched_sets |= self._repoint(conn, image_id, item.path, item.size,
                                                  item.mtime_ns, item.label)
                else:
                    old = conn.execute(
                        "SELECT id, sha256 FROM images WHERE path = ?", (item.path,)
                    ).fetchone()
                    if old is not None and old[1] != item.sha256:
                        # New content at a known path: every other feature set's vector of
                        # the old content is stale now.
                        stale = conn.execute(
                            "SELECT feature_set_id FROM vectors WHERE image_id = ?", (old[0],)
                        ).fetchall()
                        touched_sets.update(r[0] for r in stale)
                        conn.execute("DELETE FROM vectors WHERE image_id = ?", (old[0],))
                    conn.execute(
                        "INSERT INTO images(path, size, mtime_ns, sha256, width, height, label,"
                        " indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT(path) DO UPDATE SET size=excluded.size,"
                        " mtime_ns=excluded.mtime_ns, sha256=excluded.sha256,"
                        " width=excluded.width, height=excluded.height, label=excluded.label,"
                        " indexed_at=excluded.indexed_at",
                        (item.path, item.size, item.mtime_ns, item.sha256, item.width,
                         item.height, item.label, now),
                    )
                    image_id = conn.execute(
                        "SELECT id FROM images WHERE path = ?", (item.path,)
                    ).fetchone()[0]
                for fs_id, given in item.vectors.items():
                    vector = np.ascontiguousarray(given, np.float32)
                    if vector.shape != (dims[fs_id],) or not np.isfinite(vector).all():
                        raise ValueError(f"{item.path}: vector of shape {vector.shape} with "
                                         f"non-finite values or not of length {dims[fs_id]}")
                    conn.execute(PUT_VECTOR, (fs_id, image_id, self._vector_param(vector)))
                    touched_sets.add(fs_id)
            self._bump(conn, touched_sets)

    @staticmethod
    def _sets_with_vectors(conn: sqlite3.Connection, image_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for start in range(0, len(image_ids), 500):
            chunk = list(image_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(
                f"SELECT DISTINCT feature_set_id FROM vectors WHERE image_id IN ({marks})",
                chunk))
        return found

    @classmethod
    def _repoint(cls, conn: sqlite3.Connection, image_id: int, path: str, size: int,
                 mtime_ns: int, label: str) -> set[int]:
        """Moves an image row to a new path; gives the feature sets that lost vectors."""
        # Whatever row held the destination path described content that is gone now.
        displaced = [r[0] for r in conn.execute(
            "SELECT id FROM images WHERE path = ? AND id != ?", (path, image_id))]
        losing = cls._sets_with_vectors(conn, displaced)
        conn.execute("DELETE FROM images WHERE path = ? AND id != ?", (path, image_id))
        conn.execute(
            "UPDATE images SET path = ?, size = ?, mtime_ns = ?, label = ? WHERE id = ?",
            (path, size, mtime_ns, label, image_id),
        )
        return losing

    def remove_images(self, image_ids: Iterable[int]) -> int:
        """Removes images and all their vectors in one transaction; gives how many."""
        ids = list(image_ids)
        if not ids:
            return 0
        with self._transaction() as conn:
            sets = self._sets_with_vectors(conn, ids)
            conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
            self._bump(conn, sets)
        return len(ids)

    def remove_under(self, path: str) -> int:
        """Removes every image at or below an absolute path, and the collections there; gives
        how many images."""
        low, high = prefix_bounds(path)
        with self._transaction() as conn:
            conn.execute("DELETE FROM collections WHERE root = ? OR (root >= ? AND root < ?)",
                         (path.rstrip(os.sep), low, high))
        return self.remove_images(row.id for row in self.images_under(path).values())
