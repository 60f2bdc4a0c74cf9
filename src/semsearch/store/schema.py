"""The catalogue's schema, once for SQLite and PostgreSQL: migrations, oldest first. A
catalogue at version n has had the first n applied (SQLite keeps n in PRAGMA user_version,
PostgreSQL in its meta table). To change the schema, append a Migration here; both back ends
run it. Never edit one that has shipped: catalogues out there were made by it."""

from __future__ import annotations

import secrets

from semsearch.store.ddl import (
    BIGINT,
    BLOB,
    ID,
    INT,
    PATH,
    REAL,
    SERIAL,
    TEXT,
    VECTOR,
    Column,
    Index,
    Migration,
    Statement,
    Table,
)


def _new_catalogue_id() -> tuple[str]:
    return (secrets.token_hex(16),)


MIGRATIONS: tuple[Migration, ...] = (
    Migration("the first schema", (
        Table("images", (
            Column("id", ID),
            Column("path", PATH, unique=True),
            Column("size", BIGINT),
            Column("mtime_ns", BIGINT),
            Column("sha256", TEXT),
            Column("width", INT),
            Column("height", INT),
            Column("label", TEXT),
            Column("indexed_at", REAL),
        )),
        Index("images_sha256", "images", ("sha256",)),
        Table("feature_sets", (
            Column("id", ID),
            Column("name", TEXT),
            Column("model", TEXT),
            Column("layer", TEXT),
            Column("pooling", TEXT),
            Column("preprocessing", TEXT),
            Column("dim", INT),
            Column("version", BIGINT, default=0),
            Column("created_at", REAL),
        ), unique=(("name", "preprocessing"),)),
        Table("vectors", (
            Column("feature_set_id", BIGINT, references="feature_sets"),
            Column("image_id", BIGINT, references="images"),
            Column("vector", VECTOR),
        ), primary_key=("feature_set_id", "image_id"), without_rowid=True),
        Index("vectors_image", "vectors", ("image_id",)),
    )),
    Migration("an identity for the catalogue, so index files can tell which catalogue built "
              "them", (
        Table("meta", (
            Column("key", TEXT, primary_key=True),
            Column("value", TEXT),
        )),
        Statement("INSERT INTO meta(key, value) VALUES ('catalogue_id', ?)", _new_catalogue_id),
    )),
    Migration("comparison sweeps (`semsearch compare`) and their scores, kept for the web app", (
        Table("sweeps", (
            Column("id", ID),
            Column("root", TEXT),
            Column("settings", TEXT),
            Column("created_at", REAL),
        )),
        Table("sweep_results", (
            Column("sweep_id", BIGINT, references="sweeps"),
            Column("feature_set", TEXT),
            Column("preprocessing", TEXT),
            Column("metric", TEXT),
            Column("scores", TEXT),
            Column("image_ids", BLOB),
            Column("per_query", BLOB),
        ), primary_key=("sweep_id", "feature_set", "metric"), without_rowid=True),
    )),
    Migration("adapters (`semsearch adapt`): learned projections of a base feature set", (
        Table("adapters", (
            Column("name", TEXT, primary_key=True),
            Column("base", TEXT),
            Column("preprocessing", TEXT),
            Column("dim_in", INT),
            Column("dim_out", INT),
            Column("weights", BLOB),
            Column("info", TEXT),
            Column("created_at", REAL),
        )),
    )),
    Migration("collections (the folders people index and browse) and cached 2-D maps", (
        Table("collections", (
            Column("id", SERIAL),
            Column("root", PATH, unique=True),
            Column("created_at", REAL),
        )),
        Table("maps", (
            Column("feature_set_id", BIGINT, references="feature_sets"),
            Column("root", PATH),
            Column("version", BIGINT),
            Column("image_ids", BLOB),
            Column("coords", BLOB),
        ), primary_key=("feature_set_id", "root"), without_rowid=True),
    )),
)
SCHEMA_VERSION = len(MIGRATIONS)
