"""The catalogue's SQL schema as migrations, oldest first: a catalogue at version n has had
the first n applied (SQLite keeps n in PRAGMA user_version, PostgreSQL in its meta table)."""

from __future__ import annotations

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
