"""The catalogue: images, feature sets and vectors in one SQLite file. Vectors are keyed by
the feature set that produced them, so a second model never touches the first one's. The
schema is versioned (PRAGMA user_version) and migrates forward; every write is one
transaction, so a process killed at any moment leaves the last committed state."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import NotIndexedError, StoreError, StoreVersionError
from semsearch.featureset import FeatureSet

log = logging.getLogger(__name__)

_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        label TEXT NOT NULL,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX images_sha256 ON images(sha256);
    CREATE TABLE feature_sets(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        layer TEXT NOT NULL,
        pooling TEXT NOT NULL,
        preprocessing TEXT NOT NULL,
        dim INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        UNIQUE(name, preprocessing)
    );
    CREATE TABLE vectors(
        feature_set_id INTEGER NOT NULL REFERENCES feature_sets(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        vector BLOB NOT NULL,
        PRIMARY KEY(feature_set_id, image_id)
    ) WITHOUT ROWID;
    CREATE INDEX vectors_image ON vectors(image_id);
    """,
    # 2: an identity for the catalogue, so index files can tell which catalogue built them.
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta(key, value) VALUES ('catalogue_id', lower(hex(randomblob(16))));
    """,
    # 3: comparison sweeps (`semsearch compare`) and their scores, kept for the web app.
    """
    CREATE TABLE sweeps(
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        settings TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sweep_results(
        sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
        feature_set TEXT NOT NULL,
        preprocessing TEXT NOT NULL,
        metric TEXT NOT NULL,
        scores TEXT NOT NULL,
        image_ids BLOB NOT NULL,
        per_query BLOB NOT NULL,
        PRIMARY KEY(sweep_id, feature_set, metric)
    ) WITHOUT ROWID;
    """,
    # 4: adapters (`semsearch adapt`): learned projections of a base feature set.
    """
    CREATE TABLE adapters(
        name TEXT PRIMARY KEY,
        base TEXT NOT NULL,
        preprocessing TEXT NOT NULL,
        dim_in INTEGER NOT NULL,
        dim_out INTEGER NOT NULL,
        weights BLOB NOT NULL,
        info TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 5: collections (the folders people index and browse) and cached 2-D maps.
    """
    CREATE TABLE collections(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        root TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE TABLE maps(
        feature_set_id INTEGER NOT NULL REFERENCES feature_sets(id) ON DELETE CASCADE,
        root TEXT NOT NULL,
        version INTEGER NOT NULL,
        image_ids BLOB NOT NULL,
        coords BLOB NOT NULL,
        PRIMARY KEY(feature_set_id, root)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
_PUT_VECTOR = ("INSERT INTO vectors(feature_set_id, image_id, vector) VALUES (?, ?, ?)"
               " ON CONFLICT(feature_set_id, image_id) DO UPDATE SET vector = excluded.vector")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    label: str


@dataclass(frozen=True)
class FeatureSetRecord:
    """A feature set as stored: `version` grows with every change to its vectors (and only
    then: a file that moves keeps its vector and its id, so indexes stay valid)."""

    id: int
    feature_set: FeatureSet
    preprocessing: str
    dim: int
    version: int

    @property
    def name(self) -> str:
        return str(self.feature_set)


@dataclass(frozen=True)
class NewImage:
    """A decoded file and its vectors (by feature set id), ready to be written. `replaces` is
    the id of a stored image with the same content (a moved file) whose row is re-pointed
    instead of added."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    label: str
    vectors: Mapping[int, npt.NDArray[np.float32]]
    replaces: int | None = None


@dataclass(frozen=True)
class Move:
    """A stored image whose file now lives at another path, or was touched, unchanged."""

    image_id: int
    path: str
    size: int
    mtime_ns: int
    label: str
    touched: bool = False  # same path, same content, new modification time


@dataclass(frozen=True)
class SweepRecord:
    """A stored comparison run: the folder it measured and its settings (JSON text)."""

    id: int
    root: str
    settings: str
    created_at: float


@dataclass(frozen=True)
class SweepRow:
    """One configuration's scores in a sweep: the means (JSON text) and the weighted
    precision at 15 of every query image, by image id."""

    feature_set: str
    preprocessing: str
    metric: str
    scores: str
    image_ids: npt.NDArray[np.int64]
    per_query: npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdapterRecord:
    """A learned projection (dim_in x dim_out) of a base feature set's vectors, and what it
    was trained on (JSON text). `digest` names these exact weights."""

    name: str
    base: FeatureSet
    preprocessing: str
    weights: npt.NDArray[np.float32]
    info: str
    created_at: float

    @property
    def digest(self) -> str:
        return weights_digest(self.weights)


def weights_digest(weights: npt.NDArray[np.float32]) -> str:
    """Gives a short name of exactly these adapter weights."""
    return hashlib.sha256(np.ascontiguousarray(weights, np.float32).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class AdaptedVectors:
    """The vectors an adapter gives for stored images, written with the adapter."""

    feature_set: FeatureSet
    preprocessing: str
    image_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]


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


def _prefix_bounds(root: str) -> tuple[str, str]:
    prefix = root.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


class Store:
    """The SQLite catalogue. Open with `Store.open(path)`; use as a context manager."""

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
        if self.schema_version == SCHEMA_VERSION:
            return
        with self._transaction() as conn:
            # Read again under the write lock: another process may have just migrated.
            current = self.schema_version
            if current > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"{self.path} has schema version {current}, newer than this semsearch "
                    f"knows ({SCHEMA_VERSION}); upgrade semsearch to use it"
                )
            if current == 0 and conn.execute(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                raise StoreError(f"{self.path} is an SQLite file of another program, not a "
                                 "semsearch catalogue; choose another --db")
            for version in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version + 1}")
                log.info("migrated %s to schema version %d", self.path, version + 1)

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
        low, high = _prefix_bounds(root)
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
        low, high = _prefix_bounds(root)
        rows = self._image_rows(
            "WHERE path = ? OR (path >= ? AND path < ?)", (root.rstrip(os.sep), low, high)
        )
        return {row.path: row for row in rows}

    def ids_under(self, root: str) -> npt.NDArray[np.int64]:
        """Gives the ids of the stored images at or below the absolute path root, sorted."""
        low, high = _prefix_bounds(root)
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
        low, high = _prefix_bounds(root)
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
                    conn.execute(_PUT_VECTOR, (fs_id, image_id, self._vector_param(vector)))
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
                _PUT_VECTOR, [(fs_id, int(i), self._vector_param(row))
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
        low, high = _prefix_bounds(path)
        with self._transaction() as conn:
            conn.execute("DELETE FROM collections WHERE root = ? OR (root >= ? AND root < ?)",
                         (path.rstrip(os.sep), low, high))
        return self.remove_images(row.id for row in self.images_under(path).values())

    # -- sweeps -------------------------------------------------------------------------------

    def save_sweep(self, root: str, settings: str, rows: Sequence[SweepRow]) -> SweepRecord:
        """Stores a comparison run and its rows in one transaction; gives its record."""
        now = time.time()
        with self._transaction() as conn:
            sweep_id = int(conn.execute(
                "INSERT INTO sweeps(root, settings, created_at) VALUES (?, ?, ?) RETURNING id",
                (root, settings, now)).fetchone()[0])
            conn.executemany(
                "INSERT INTO sweep_results(sweep_id, feature_set, preprocessing, metric, scores,"
                " image_ids, per_query) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(sweep_id, row.feature_set, row.preprocessing, row.metric, row.scores,
                  np.ascontiguousarray(row.image_ids, np.int64).tobytes(),
                  np.ascontiguousarray(row.per_query, np.float32).tobytes()) for row in rows])
        return SweepRecord(sweep_id, root, settings, now)

    def sweeps(self, root: str | None = None) -> list[SweepRecord]:
        """Gives the stored comparison runs, newest first (of one folder, if given)."""
        where, args = ("WHERE root = ?", (root,)) if root is not None else ("", ())
        rows = self._read(
            f"SELECT id, root, settings, created_at FROM sweeps {where} ORDER BY id DESC", args)
        return [SweepRecord(*row) for row in rows]

    def sweep_rows(self, sweep_id: int) -> list[SweepRow]:
        """Gives a stored comparison run's rows, or raises NotIndexedError."""
        if not self._read("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)):
            raise NotIndexedError(f"no comparison run with id {sweep_id} in the catalogue")
        rows = self._read(
            "SELECT feature_set, preprocessing, metric, scores, image_ids, per_query"
            " FROM sweep_results WHERE sweep_id = ? ORDER BY feature_set, metric", (sweep_id,))
        return [SweepRow(r[0], r[1], r[2], r[3], np.frombuffer(r[4], np.int64).copy(),
                         np.frombuffer(r[5], np.float32).copy()) for r in rows]

    # -- adapters -----------------------------------------------------------------------------

    def save_adapter(self, name: str, base: FeatureSet, preprocessing: str,
                     weights: npt.NDArray[np.float32], info: str,
                     adapted: AdaptedVectors | None = None) -> AdapterRecord:
        """Stores an adapter, and the vectors it gives (if given), in one transaction. An
        adapter of the same name is replaced, and the feature sets its other weights made
        are removed with their vectors; gives the record."""
        matrix = np.ascontiguousarray(weights, np.float32)
        if matrix.ndim != 2 or not np.isfinite(matrix).all():
            raise ValueError("adapter weights must be a finite 2-D matrix")
        now = time.time()
        record = AdapterRecord(name, base, preprocessing, matrix, info, now)
        with self._transaction() as conn:
            # The set made by these very weights (a retrain that changed nothing) stays.
            keep = adapted.preprocessing if adapted is not None else None
            stale = [r.id for r in self._feature_set_rows_in(conn)
                     if r.feature_set.adapter == name and r.preprocessing != keep]
            conn.executemany("DELETE FROM feature_sets WHERE id = ?", [(i,) for i in stale])
            conn.execute(
                "INSERT INTO adapters(name, base, preprocessing, dim_in, dim_out,"
                " weights, info, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET base = excluded.base,"
                " preprocessing = excluded.preprocessing, dim_in = excluded.dim_in,"
                " dim_out = excluded.dim_out, weights = excluded.weights, info = excluded.info,"
                " created_at = excluded.created_at",
                (name, str(base), preprocessing, matrix.shape[0], matrix.shape[1],
                 matrix.tobytes(), info, now))
            if adapted is not None:
                fs = adapted.feature_set
                conn.execute(
                    "INSERT INTO feature_sets(name, model, layer, pooling,"
                    " preprocessing, dim, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(name, preprocessing) DO NOTHING",
                    (str(fs), fs.model, fs.layer, fs.pooling, adapted.preprocessing,
                     matrix.shape[1], now))
                fs_id = conn.execute(
                    "SELECT id FROM feature_sets WHERE name = ? AND preprocessing = ?",
                    (str(fs), adapted.preprocessing)).fetchone()[0]
                conn.executemany(
                    _PUT_VECTOR,
                    [(fs_id, int(i), self._vector_param(np.ascontiguousarray(v, np.float32)))
                     for i, v in zip(adapted.image_ids, adapted.vectors, strict=True)])
                self._bump(conn, [fs_id])
        return record

    def _feature_set_rows_in(self, conn: sqlite3.Connection) -> list[FeatureSetRecord]:
        rows = conn.execute("SELECT id, name, preprocessing, dim, version FROM feature_sets"
                            " ORDER BY id").fetchall()
        return [FeatureSetRecord(r[0], FeatureSet.parse(r[1]), r[2], r[3], r[4]) for r in rows]

    def adapter(self, name: str) -> AdapterRecord:
        """Gives the named adapter, or raises NotIndexedError naming the known ones."""
        rows = self._read(
            "SELECT name, base, preprocessing, dim_in, dim_out, weights, info, created_at"
            " FROM adapters WHERE name = ?", (name,))
        if not rows:
            known = ", ".join(self.adapter_names()) or "none yet"
            raise NotIndexedError(f"no adapter named {name!r} in the catalogue (known: "
                                  f"{known}); train one with `semsearch adapt FOLDER`")
        r = rows[0]
        weights = np.frombuffer(r[5], np.float32).reshape(r[3], r[4]).copy()
        return AdapterRecord(r[0], FeatureSet.parse(r[1]), r[2], weights, r[6], r[7])

    def adapter_created(self, name: str) -> float | None:
        """Gives when the named adapter was saved (None if there is none): a cheap check
        that a loaded adapter is still current."""
        rows = self._read("SELECT created_at FROM adapters WHERE name = ?", (name,))
        return float(rows[0][0]) if rows else None

    def adapter_names(self) -> list[str]:
        return [str(r[0]) for r in self._read("SELECT name FROM adapters ORDER BY name")]

    def adapters(self) -> list[AdapterRecord]:
        return [self.adapter(name) for name in self.adapter_names()]

    # -- collections and maps -----------------------------------------------------------------

    def add_collection(self, root: str) -> int:
        """Registers an indexed folder as a collection (once); gives its id."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO collections(root, created_at) VALUES (?, ?)"
                         " ON CONFLICT(root) DO NOTHING", (root, time.time()))
            return int(conn.execute("SELECT id FROM collections WHERE root = ?",
                                    (root,)).fetchone()[0])

    def collection_root(self, cid: int) -> str | None:
        rows = self._read("SELECT root FROM collections WHERE id = ?", (cid,))
        return str(rows[0][0]) if rows else None

    def has_vectors_under(self, fs_id: int, root: str) -> bool:
        """Gives whether any image at or below root has the feature set's vector (cheap)."""
        low, high = _prefix_bounds(root)
        return bool(self._read(
            "SELECT 1 FROM vectors v JOIN images i ON i.id = v.image_id"
            " WHERE v.feature_set_id = ? AND (i.path = ? OR (i.path >= ? AND i.path < ?))"
            " LIMIT 1", (fs_id, root.rstrip(os.sep), low, high)))

    def collections(self) -> list[tuple[int, str]]:
        """Gives (id, root) of every collection, oldest first."""
        return [(int(r[0]), str(r[1]))
                for r in self._read("SELECT id, root FROM collections ORDER BY id")]

    def save_map(self, fs_id: int, root: str, version: int, image_ids: npt.NDArray[np.int64],
                 coords: npt.NDArray[np.float32]) -> None:
        """Stores a 2-D map of a collection's vectors, made at the feature set's version."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO maps(feature_set_id, root, version, image_ids, coords)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(feature_set_id, root) DO UPDATE SET"
                " version = excluded.version, image_ids = excluded.image_ids,"
                " coords = excluded.coords",
                (fs_id, root, version, np.ascontiguousarray(image_ids, np.int64).tobytes(),
                 np.ascontiguousarray(coords, np.float32).tobytes()))

    def load_map(self, fs_id: int, root: str
                 ) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """Gives (version, image ids, n x 2 coordinates) of a stored map, or None."""
        rows = self._read("SELECT version, image_ids, coords FROM maps"
                          " WHERE feature_set_id = ? AND root = ?", (fs_id, root))
        if not rows:
            return None
        ids = np.frombuffer(rows[0][1], np.int64).copy()
        return int(rows[0][0]), ids, np.frombuffer(rows[0][2], np.float32).reshape(-1, 2).copy()
