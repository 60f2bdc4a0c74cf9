"""The SQLite catalogue: opened, migrated forward and written one transaction at a time on one
connection. The `Store` is made of parts on that connection: images (`image_rows`), feature
sets and vectors (`vector_rows`), and what comparisons and the web app keep (`saved`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import StoreError
from semsearch.store.ddl import Migration, upgrade
from semsearch.store.image_rows import ImageRows
from semsearch.store.saved import SavedResults
from semsearch.store.schema import MIGRATIONS
from semsearch.store.vector_rows import VectorRows

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


class Store(ImageRows, VectorRows, SavedResults):
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

