"""The catalogue: images, feature sets and vectors in one SQLite file. Vectors are keyed by
the feature set that produced them, so a second model never touches the first one's. The
schema is versioned (PRAGMA user_version) and migrates forward; every write is one
transaction, so a process killed at any moment leaves the last committed state.

The package: `catalogue` (the Store: opening, migrating, the connection), and the parts the
Store is made of: `image_rows` (images by path, id and hash; batches written, moves,
removals), `vector_rows` (feature sets and their vectors), `saved` (comparison runs,
adapters, collections and maps); `records` (the typed records), `schema` (the migrations,
one list for SQLite and PostgreSQL), `ddl` (the neutral table language they are written in,
rendered per dialect), `sql` (pieces every part uses), `postgres` (the PostgreSQL store)."""

from semsearch.store.catalogue import Store
from semsearch.store.records import (
    AdaptedVectors,
    AdapterRecord,
    FeatureSetRecord,
    ImageRecord,
    Move,
    NewImage,
    SweepRecord,
    SweepRow,
    weights_digest,
)
from semsearch.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "AdaptedVectors", "AdapterRecord",
           "FeatureSetRecord", "ImageRecord", "Move", "NewImage", "Store", "SweepRecord",
           "SweepRow", "weights_digest"]
