"""The catalogue in PostgreSQL with pgvector (`--db postgresql://...`): the same tables and
the same methods as the SQLite store, so every command and the web app work unchanged, with
vectors in a pgvector column. Many processes can read while one indexes (MVCC); each write is
one transaction. The schema carries its version in the meta table and migrates forward under
an advisory lock. psycopg and pgvector are imported only when such a catalogue is opened."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt

from semsearch.errors import ConfigError, StoreError
from semsearch.store import Store
from semsearch.store.ddl import upgrade

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
_MIGRATION_LOCK = 0x5E35EA2C  # pg_advisory_xact_lock key: one migrating process at a time

# pgvector's operators and HNSW operator classes per metric.
OPERATORS = {"cosine": ("<=>", "vector_cosine_ops"), "ip": ("<#>", "vector_ip_ops"),
             "euclidean": ("<->", "vector_l2_ops"), "sqeuclidean": ("<->", "vector_l2_ops")}
# pgvector 0.6 builds HNSW indexes over at most this many dimensions.
HNSW_MAX_DIM = 2000


def is_url(text: str | None) -> bool:
    return bool(text) and str(text).startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """Gives the URL without its password, fit to show."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _translate(sql: str) -> str:
    # The shared statements use SQLite's ? placeholders; psycopg wants %s.
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that takes the store's ?-style statements."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> Any:
        return self.raw.execute(_translate(sql), tuple(args) or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        rows = list(rows)
        if rows:
            with self.raw.cursor() as cur:
                cur.executemany(_translate(sql), rows)


class PostgresStore(Store):
    """The catalogue in a PostgreSQL database with the pgvector extension."""

    searches_vectors = True

    def __init__(self, conn: Any, url: str, index_root: Path) -> None:
        self._pg = _Connection(conn)
        self.url = url
        self.location = redact(url)
        self.path = Path(index_root) / "postgresql"  # only index_folder() derives from it
        self._index_root = Path(index_root)
        self._lock = threading.RLock()
        self._catalogue_id: str | None = None

    @classmethod
    def open_url(cls, url: str, *, index_root: Path, create: bool = True) -> PostgresStore:
        """Gives the catalogue in the database at url, created (tables and the vector
        extension) if `create`, migrated forward as needed."""
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError:
            raise ConfigError("a postgresql:// catalogue needs psycopg and pgvector: "
                              "pip install 'semsearch[postgres]'") from None
        shown = redact(url)
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {shown}: {_first_line(exc)}") from None
        try:
            has_vector = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
            if not has_vector:
                if not create:
                    raise StoreError(f"no semsearch catalogue in {shown}; run `semsearch index "
                                     "FOLDER --db URL` first")
                with conn.transaction():  # several first opens at once create it once
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            from psycopg.types.numeric import Int8Dumper

            conn.adapters.register_dumper(np.int64, Int8Dumper)
            store = cls(conn, url, index_root)
            store._migrate_pg(create)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot use {shown} as a semsearch catalogue: "
                             f"{_first_line(exc)}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        self._pg.raw.close()

    def index_folder(self) -> Path:
        """Gives the local folder for this catalogue's FAISS index files (the cache folder,
        per catalogue id): each machine that searches keeps its own."""
        return self._index_root / "indexes" / self.catalogue_id

    @property
    def catalogue_id(self) -> str:
        if self._catalogue_id is None:
            self._catalogue_id = super().catalogue_id
        return self._catalogue_id

    @property
    def schema_version(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    @staticmethod
    def _vector_param(vector: npt.NDArray[np.float32]) -> Any:
        return np.ascontiguousarray(vector, np.float32)

    @staticmethod
    def _vector_matrix(values: Sequence[Any], dim: int) -> npt.NDArray[np.float32]:
        if not values:
            return np.zeros((0, dim), np.float32)
        return np.stack([np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, np.float32)
                         for v in values])

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        import psycopg

        with self._lock:
            try:
                return list(self._pg.execute(sql, args).fetchall())
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot read {self.location}: {_first_line(exc)}") from None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        import psycopg

        with self._lock:
            try:
                with self._pg.raw.transaction():
                    yield self._pg
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot write to {self.location}: {_first_line(exc)}") \
                    from None

    def _migrate(self) -> None:
        pass  # see _migrate_pg, which knows whether it may create the tables

    def _migrate_pg(self, create: bool) -> None:
        target = len(self.migrations)
        if self._has_meta() and self.schema_version == target:
            return
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            current = 0
            # An existing catalogue has its meta table: the first PostgreSQL ones were made at
            # version 5, and meta comes at 2.
            if self._has_meta():
                current = int(conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            else:
                taken = conn.execute(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema ="
                    " current_schema() AND table_name IN ('images', 'vectors')").fetchone()[0]
                if taken:
                    raise StoreError(f"{self.location} has tables named images or vectors "
                                     "that are not a semsearch catalogue; use another "
                                     "database or schema")
                if not create:
                    raise StoreError(f"no semsearch catalogue in {self.location}; run "
                                     "`semsearch index FOLDER --db URL` first")
            upgrade(conn, "postgresql", self.migrations, current, self.location)
            # The meta table a migration made holds the version; one transaction, one write.
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT"
                         "(key) DO UPDATE SET value = excluded.value", (str(target),))
            if current == 0:
                log.info("created the semsearch catalogue in %s", self.location)

    def _has_meta(self) -> bool:
        return bool(self._read(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name = 'meta'"))

    # -- nearest-neighbour search inside PostgreSQL --------------------------------------------

    def hnsw_index_name(self, fs_id: int, metric: str) -> str:
        return f"vectors_hnsw_f{int(fs_id)}_{OPERATORS[metric][1]}"

    def ensure_hnsw(self, fs_id: int, dim: int, metric: str, *, m: int = 16,
                    ef_construction: int = 64) -> bool:
        """Builds pgvector's HNSW index over one feature set's vectors for the metric if it
        is missing; gives False when the vectors have too many dimensions for one."""
        if dim > HNSW_MAX_DIM:
            return False
        name = self.hnsw_index_name(fs_id, metric)
        opclass = OPERATORS[metric][1]
        with self._lock:
            self._pg.raw.execute("SET maintenance_work_mem = '1GB'")
            self._pg.raw.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON vectors USING hnsw "
                f"((vector::vector({int(dim)})) {opclass}) WITH (m = {int(m)}, "
                f"ef_construction = {int(ef_construction)}) WHERE feature_set_id = {int(fs_id)}")
            # Fresh statistics, so the planner knows the index is worth using.
            self._pg.raw.execute("ANALYZE vectors")
        return True

    def has_hnsw(self, fs_id: int, metric: str) -> bool:
        return bool(self._read("SELECT 1 FROM pg_indexes WHERE indexname = ?",
                               (self.hnsw_index_name(fs_id, metric),)))

    def nearest(self, fs_id: int, dim: int, metric: str, query: npt.NDArray[np.float32],
                k: int, ef_search: int = 0) -> tuple[npt.NDArray[np.float64],
                                                     npt.NDArray[np.int64]]:
        """Gives (pgvector distances, image ids) of the k nearest vectors of the feature set,
        through its HNSW index when there is one (else an exact scan)."""
        op = OPERATORS[metric][0]
        # Literal feature set id and dimension, so the planner matches the partial index.
        sql = (f"SELECT image_id, vector::vector({int(dim)}) {op} %s::vector({int(dim)})"
               f" AS d FROM vectors WHERE feature_set_id = {int(fs_id)} ORDER BY d LIMIT %s")
        with self._lock, self._pg.raw.transaction():
            self._pg.raw.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search or 40), k)}")
            rows = self._pg.raw.execute(sql, (np.ascontiguousarray(query, np.float32),
                                              int(k))).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        return np.array([r[1] for r in rows], np.float64), ids

    def explain_nearest(self, fs_id: int, dim: int, metric: str) -> str:
        """Gives PostgreSQL's plan for a nearest-neighbour query (for tests and `info`)."""
        op = OPERATORS[metric][0]
        probe = "[" + ",".join("0.1" for _ in range(dim)) + "]"
        rows = self._read(
            f"EXPLAIN SELECT image_id FROM vectors WHERE feature_set_id = {int(fs_id)}"
            f" ORDER BY vector::vector({int(dim)}) {op} '{probe}'::vector({int(dim)}) LIMIT 10")
        return "\n".join(r[0] for r in rows)


def _first_line(exc: BaseException) -> str:
    return re.sub(r"\s+", " ", str(exc).strip().splitlines()[0] if str(exc).strip() else
                  type(exc).__name__)
