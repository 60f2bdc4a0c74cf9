"""One schema description for both back ends: what it renders for SQLite and PostgreSQL is
today's catalogue, statement for statement and column for column; catalogues made by the old
SQL (kept verbatim in tests/schema_v5.py) open unchanged; and a migration appended to the one
list reaches both back ends."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from tests.schema_v5 import POSTGRES_SCHEMA, SQLITE_MIGRATIONS

from semsearch.errors import StoreVersionError
from semsearch.featureset import FeatureSet
from semsearch.store import MIGRATIONS, SCHEMA_VERSION, NewImage, Store
from semsearch.store.ddl import (
    BIGINT,
    DIALECTS,
    ID,
    TEXT,
    TYPES,
    Column,
    Index,
    Migration,
    Statement,
    Table,
)

FS = FeatureSet("tiny", "head_act", "avg")

# A fresh SQLite catalogue, table by table: columns in order (type, NOT NULL, DEFAULT, place
# in the key), then references, indexes ("u" unique constraint, "pk" key, "c" CREATE INDEX)
# and storage.
EXPECTED_SQLITE = {
    "adapters": """name TEXT KEY1 | base TEXT NOT NULL | preprocessing TEXT NOT NULL
        | dim_in INTEGER NOT NULL | dim_out INTEGER NOT NULL | weights BLOB NOT NULL
        | info TEXT NOT NULL | created_at REAL NOT NULL | unique pk index(name)""",
    "collections": """id INTEGER KEY1 | root TEXT NOT NULL | created_at REAL NOT NULL
        | unique u index(root) | AUTOINCREMENT""",
    "feature_sets": """id INTEGER KEY1 | name TEXT NOT NULL | model TEXT NOT NULL
        | layer TEXT NOT NULL | pooling TEXT NOT NULL | preprocessing TEXT NOT NULL
        | dim INTEGER NOT NULL | version INTEGER NOT NULL DEFAULT 0 | created_at REAL NOT NULL
        | unique u index(name, preprocessing)""",
    "images": """id INTEGER KEY1 | path TEXT NOT NULL | size INTEGER NOT NULL
        | mtime_ns INTEGER NOT NULL | sha256 TEXT NOT NULL | width INTEGER NOT NULL
        | height INTEGER NOT NULL | label TEXT NOT NULL | indexed_at REAL NOT NULL
        | c index(sha256) images_sha256 | unique u index(path)""",
    "maps": """feature_set_id INTEGER NOT NULL KEY1 | root TEXT NOT NULL KEY2
        | version INTEGER NOT NULL | image_ids BLOB NOT NULL | coords BLOB NOT NULL
        | feature_set_id -> feature_sets(id) ON DELETE CASCADE
        | unique pk index(feature_set_id, root) | WITHOUT ROWID""",
    "meta": "key TEXT KEY1 | value TEXT NOT NULL | unique pk index(key)",
    "sweep_results": """sweep_id INTEGER NOT NULL KEY1 | feature_set TEXT NOT NULL KEY2
        | preprocessing TEXT NOT NULL | metric TEXT NOT NULL KEY3 | scores TEXT NOT NULL
        | image_ids BLOB NOT NULL | per_query BLOB NOT NULL
        | sweep_id -> sweeps(id) ON DELETE CASCADE
        | unique pk index(sweep_id, feature_set, metric) | WITHOUT ROWID""",
    "sweeps": """id INTEGER KEY1 | root TEXT NOT NULL | settings TEXT NOT NULL
        | created_at REAL NOT NULL""",
    "vectors": """feature_set_id INTEGER NOT NULL KEY1 | image_id INTEGER NOT NULL KEY2
        | vector BLOB NOT NULL | feature_set_id -> feature_sets(id) ON DELETE CASCADE
        | image_id -> images(id) ON DELETE CASCADE | c index(image_id) vectors_image
        | unique pk index(feature_set_id, image_id) | WITHOUT ROWID""",
}


def _normal(sql: str) -> str:
    """Gives a statement with its layout removed, to compare what it says."""
    return re.sub(r"\s*([(),])\s*", r"\1", re.sub(r"\s+", " ", sql).strip())


def _statements(script: str) -> list[str]:
    return [_normal(s) for s in script.split(";") if s.strip()]


def sqlite_shape(conn: sqlite3.Connection) -> dict[str, str]:
    """Gives each table's structure as PRAGMA reports it, in EXPECTED_SQLITE's notation."""
    shape = {}
    for name, without_rowid, sql in conn.execute(
            "SELECT l.name, l.wr, m.sql FROM pragma_table_list l JOIN sqlite_master m"
            " ON m.name = l.name WHERE l.schema = 'main' AND l.name NOT LIKE 'sqlite_%'"
            " ORDER BY l.name"):
        parts = [" ".join(filter(None, [col, kind, "NOT NULL" * notnull,
                                        "" if default is None else f"DEFAULT {default}",
                                        f"KEY{pk}" if pk else ""]))
                 for _, col, kind, notnull, default, pk in conn.execute(
                     f"PRAGMA table_info({name})")]
        parts += sorted(f"{frm} -> {table}({to}) ON DELETE {delete}" for _, _, table, frm, to,
                        _, delete, _ in conn.execute(f"PRAGMA foreign_key_list({name})"))
        indexes = []
        for _, index, unique, origin, _ in conn.execute(f"PRAGMA index_list({name})"):
            cols = ", ".join(r[2] for r in conn.execute(f"PRAGMA index_info({index})"))
            own = "" if index.startswith("sqlite_autoindex") else f" {index}"
            indexes.append(f"{'unique ' * unique}{origin} index({cols}){own}")
        parts += sorted(indexes)
        parts += ["AUTOINCREMENT"] * ("AUTOINCREMENT" in sql) + ["WITHOUT ROWID"] * without_rowid
        shape[name] = " | ".join(parts)
    return shape


def _expected() -> dict[str, str]:
    return {name: re.sub(r"\s+", " ", text).strip() for name, text in EXPECTED_SQLITE.items()}


def _master(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
    return [(kind, name, sql and _normal(sql)) for kind, name, sql in rows]


def _old_sqlite(path: Path, version: int = SCHEMA_VERSION) -> Path:
    """Writes a catalogue at `version` with the old SQL, holding one image with a vector."""
    conn = sqlite3.connect(path)
    for script in SQLITE_MIGRATIONS[:version]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute("INSERT INTO images VALUES (1, '/p/a.png', 1, 1, 'x', 4, 3, 'l', 0)")
    conn.execute("INSERT INTO feature_sets(name, model, layer, pooling, preprocessing, dim,"
                 " created_at) VALUES (?, 'tiny', 'head_act', 'avg', 'pre', 2, 0)", (str(FS),))
    conn.execute("INSERT INTO vectors VALUES (1, 1, ?)", (np.ones(2, np.float32).tobytes(),))
    conn.commit()
    conn.close()
    return path


def test_every_column_has_a_logical_type_each_dialect_spells() -> None:
    used = {c.type for m in MIGRATIONS for t in m.parts if isinstance(t, Table)
            for c in t.columns}
    assert used <= set(TYPES)
    assert all(t.render(d) for t in TYPES for d in DIALECTS)


def test_both_dialects_render_todays_statements() -> None:
    # The catalogue id is now made in Python and inserted the same way by both.
    made_in_sql = re.compile(r"INSERT INTO meta\(key,value\)VALUES\('catalogue_id',.*\)")
    for migration, old in zip(MIGRATIONS, SQLITE_MIGRATIONS, strict=True):
        rendered = [_normal(s) for s in migration.statements("sqlite")]
        assert [s for s in rendered if "?" not in s] == \
            [s for s in _statements(old) if not made_in_sql.fullmatch(s)]
    rendered = [_normal(s) for m in MIGRATIONS for s in m.statements("postgresql")]
    old_pg = _statements(POSTGRES_SCHEMA)
    assert sorted(s for s in rendered if "?" not in s) == \
        sorted(s for s in old_pg if not made_in_sql.fullmatch(s))
    inserts = [s for s in rendered if "?" in s]
    assert inserts == ["INSERT INTO meta(key,value)VALUES('catalogue_id',?)"]


def test_a_fresh_sqlite_catalogue_has_the_expected_structure(tmp_path: Path) -> None:
    Store.open(tmp_path / "new.db").close()
    new = sqlite3.connect(tmp_path / "new.db")
    assert sqlite_shape(new) == _expected()
    # And it is what the old SQL made, down to the text SQLite keeps, in the same order.
    old = sqlite3.connect(_old_sqlite(tmp_path / "old.db"))
    assert sqlite_shape(old) == _expected()
    assert _master(new) == _master(old)
    assert new.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (5,)


def test_a_version_5_sqlite_catalogue_opens_unchanged(tmp_path: Path) -> None:
    path = _old_sqlite(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    before = _master(conn), conn.execute("SELECT value FROM meta").fetchall()
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version == 5 and store.catalogue_id == before[1][0][0]
        fs = store.feature_set(FS)
        assert store.vectors(fs.id)[1].tolist() == [[1.0, 1.0]]
        store.write_batch([NewImage("/p/b.png", 2, 2, "y", 4, 3, "l",
                                    {fs.id: np.zeros(2, np.float32)})])
        assert store.count_vectors(fs.id) == 2 and store.add_collection("/p") == 1
    conn = sqlite3.connect(path)
    assert _master(conn) == before[0]


def _with_a_notes_table() -> tuple[Migration, ...]:
    """Gives a test-only copy of the list with one more migration, as a real one is added."""
    return (*MIGRATIONS, Migration("test only: notes on images", (
        Table("notes", (Column("id", ID), Column("image_id", BIGINT, references="images"),
                        Column("body", TEXT))),
        Index("notes_image", "notes", ("image_id",)),
        Statement("INSERT INTO meta(key, value) VALUES ('noted', ?)", lambda: ("yes",)),
    )))


def test_a_migration_added_to_the_list_reaches_sqlite(tmp_path: Path) -> None:
    class Future(Store):
        migrations = _with_a_notes_table()

    path = _old_sqlite(tmp_path / "old.db")
    with Future.open(path) as store:
        assert store.schema_version == 6 and store.meta("noted") == "yes"
    conn = sqlite3.connect(path)
    assert sqlite_shape(conn)["notes"] == (
        "id INTEGER KEY1 | image_id INTEGER NOT NULL | body TEXT NOT NULL"
        " | image_id -> images(id) ON DELETE CASCADE | c index(image_id) notes_image")
    with pytest.raises(StoreVersionError, match=r"schema version 6, newer .* knows \(5\)"):
        Store.open(path)


# -- PostgreSQL (a real server from conftest's pg_server) -----------------------------------


def pg_shape(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Gives the catalogue's tables, columns, constraints and indexes as PostgreSQL's
    catalogues report them."""
    here = "table_schema = current_schema()"
    queries = {
        "columns": "SELECT table_name, column_name, ordinal_position, data_type, udt_name,"
                   " is_nullable, column_default, is_identity, identity_generation,"
                   f" collation_name FROM information_schema.columns WHERE {here}"
                   " ORDER BY 1, 3",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)"
                       " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                       " WHERE n.nspname = current_schema() ORDER BY 1, 2",
        "rules": "SELECT constraint_name, update_rule, delete_rule FROM"
                 " information_schema.referential_constraints WHERE constraint_schema ="
                 " current_schema() ORDER BY 1",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
                   " WHERE schemaname = current_schema() ORDER BY 1, 2",
    }
    return {name: [tuple(r) for r in conn.execute(sql).fetchall()]
            for name, sql in queries.items()}


def _old_postgres(url: str) -> None:
    """Makes a version-5 catalogue at url as the old PostgreSQL store did."""
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for statement in POSTGRES_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '5')")
        conn.execute("INSERT INTO images(path, size, mtime_ns, sha256, width, height, label,"
                     " indexed_at) VALUES ('/p/a.png', 1, 1, 'x', 4, 3, 'l', 0)")


def test_postgres_catalogues_old_and_new_have_one_shape(pg_url: str, pg_server: str,
                                                        tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    from semsearch.store.postgres import PostgresStore

    _old_postgres(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        old_shape = pg_shape(conn)
        old_id = conn.execute("SELECT value FROM meta WHERE key = 'catalogue_id'").fetchone()
    with PostgresStore.open_url(pg_url, index_root=tmp_path, create=False) as store:
        assert store.schema_version == 5 and (store.catalogue_id,) == old_id
        assert store.image_by_path("/p/a.png") is not None
        fs = store.ensure_feature_set(FS, "pre", 2)
        store.write_batch([NewImage("/p/b.png", 2, 2, "y", 4, 3, "l",
                                    {fs.id: np.ones(2, np.float32)})])
        assert store.vectors(fs.id)[1].tolist() == [[1.0, 1.0]]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert pg_shape(conn) == old_shape  # opening changed nothing

    fresh_name = urlsplit(pg_url).path.strip("/") + "_fresh"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {fresh_name}")
    fresh = pg_server.replace("/postgres?", f"/{fresh_name}?")
    PostgresStore.open_url(fresh, index_root=tmp_path).close()
    with psycopg.connect(fresh, autocommit=True) as conn:
        assert pg_shape(conn) == old_shape
        assert len(conn.execute("SELECT value FROM meta WHERE key = 'catalogue_id'"
                                ).fetchone()[0]) == 32


def test_a_migration_added_to_the_list_reaches_postgres(pg_url: str, tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    from semsearch.store.postgres import PostgresStore

    class Future(PostgresStore):
        migrations = _with_a_notes_table()

    PostgresStore.open_url(pg_url, index_root=tmp_path).close()  # today's version 5
    with Future.open_url(pg_url, index_root=tmp_path) as store:
        assert store.schema_version == 6 and store.meta("noted") == "yes"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        shape = pg_shape(conn)
    assert [c[1:] for c in shape["columns"] if c[0] == "notes"] == [
        ("id", 1, "bigint", "int8", "NO", None, "YES", "BY DEFAULT", None),
        ("image_id", 2, "bigint", "int8", "NO", None, "NO", None, None),
        ("body", 3, "text", "text", "NO", None, "NO", None, None)]
    assert ("notes", "notes_image_id_fkey", "FOREIGN KEY (image_id) REFERENCES images(id) "
            "ON DELETE CASCADE") in shape["constraints"]
    with pytest.raises(StoreVersionError, match=r"schema version 6, newer .* knows \(5\)"):
        PostgresStore.open_url(pg_url, index_root=tmp_path)
