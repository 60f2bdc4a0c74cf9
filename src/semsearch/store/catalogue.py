"""The SQLite catalogue: images, feature sets and vectors in one file, opened, migrated and
written one transaction at a time."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import NotIndexedError, StoreError
from semsearch.featureset import FeatureSet
from semsearch.store.ddl import Migration, upgrade
from semsearch.store.records import (
    FeatureSetRecord,
    ImageRecord,
    Move,
    NewImage,
)
from semsearch.store.saved import SavedResults
from semsearch.store.schema import MIGRATIONS
from semsearch.store.sql import PUT_VECTOR, prefix_bounds

log = logging.getLogger(__name__)

_BUSY_SECONDS = 30.0


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching a new file to WAL does not wait on the busy handler: when another process
    # opens the same new catalogue at that moment, SQLite says "locked" at once. Retry.
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Store(SavedResults):
    """The SQLite catalogue. Open with `Store.open(path)`; use as a context manager."""

    # Whether the database itself can search vectors (pgvector): SQLite cannot.
    searches_vectors = False
    # The schema it migrates to: one list for every back end (a test may extend a copy).
    migrations: Sequence[Migration] = MIGRATIONS

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.location = str(path)  # what messages call this catalogue
        # One connection serves every thread (a server's workers, say), one at a time.
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Gives the store at path, migrated forward as needed; created if `create`, else a
        missing file is an error (so a mistyped path does not make an empty catalogue)."""
        db_path = Path(path).expanduser().absolute()
        if db_path.is_dir():
            raise StoreError(f"{db_path} is a folder; the catalogue is a file (--db FILE)")
        if not db_path.exists():
            if not create:
                raise StoreError(f"no catalogue at {db_path}; run `semsearch index FOLDER` "
                                 "first, or point --db at an existing one")
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {db_path}: "
                                 f"{exc.strerror or exc}") from None
        try:
            conn = sqlite3.connect(db_path, timeout=_BUSY_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            _enable_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            store = cls(conn, db_path)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use {db_path} as a semsearch catalogue: {exc}") from None
        return store

    def close(self) -> None:
        self._conn.close()

    def index_folder(self) -> Path:
        """Gives the folder where this catalogue's index files live: beside the file."""
        return self.path.with_name(self.path.name + ".indexes")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # How vectors travel to and from the database; the PostgreSQL store uses pgvector's.
    @staticmethod
    def _vector_param(vector: npt.NDArray[np.float32]) -> Any:
        return vector.tobytes()

    @staticmethod
    def _vector_matrix(values: Sequence[Any], dim: int) -> npt.NDArray[np.float32]:
        matrix = np.frombuffer(b"".join(values), dtype=np.float32)
        return matrix.reshape(len(values), dim).copy()

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """Gives all rows of a query; one thread at a time uses the connection."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot write to {self.path}: {exc}") from None
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot write to {self.path}: {exc}") from None
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @property
    def catalogue_id(self) -> str:
        """Gives the random id this catalogue was given when created."""
        return str(self._read("SELECT value FROM meta WHERE key = 'catalogue_id'")[0][0])

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def meta(self, key: str) -> str | None:
        """Gives a value kept in the catalogue's meta table, or None."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                         " SET value = excluded.value", (key, value))

    def _migrate(self) -> None:
        if self.schema_version == len(self.migrations):
            return
        with self._transaction() as conn:
            # Read again under the write lock: another process may have just migrated.
            current = self.schema_version
            if current == 0 and conn.execute(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                raise StoreError(f"{self.path} is an SQLite file of another program, not a "
                                 "semsearch catalogue; choose another --db")
            upgrade(conn, "sqlite", self.migrations, current, self.location)
            conn.execute(f"PRAGMA user_version={len(self.migrations)}")

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

    # -- images -------------------------------------------------------------------------------

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

    def image_ids_with_vectors(self, fs_id: int) -> set[int]:
        rows = self._read("SELECT image_id FROM vectors WHERE feature_set_id = ?", (fs_id,))
        return {r[0] for r in rows}

    # -- vectors ------------------------------------------------------------------------------

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

    @staticmethod
    def _bump(conn: sqlite3.Connection, fs_ids: Iterable[int]) -> None:
        conn.executemany(
            "UPDATE feature_sets SET version = version + 1 WHERE id = ?",
            [(i,) for i in fs_ids],
        )

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
