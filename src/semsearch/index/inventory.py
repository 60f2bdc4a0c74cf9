"""What a catalogue holds, per feature set, with the state of its search indexes."""

from __future__ import annotations

from dataclasses import dataclass

from semsearch.index.catalog import IndexCatalog
from semsearch.index.status import IndexStatus
from semsearch.store import Store


@dataclass(frozen=True)
class FeatureSetInfo:
    feature_set: str
    preprocessing: str
    dim: int
    vectors: int
    indexes: list[IndexStatus]


@dataclass(frozen=True)
class CatalogueInfo:
    db: str
    schema_version: int
    images: int
    feature_sets: list[FeatureSetInfo]


def catalogue_info(store: Store, catalog: IndexCatalog) -> CatalogueInfo:
    """Gives what the catalogue holds, per feature set, with its indexes' state."""
    sets = [
        FeatureSetInfo(record.name, record.preprocessing, record.dim,
                       store.count_vectors(record.id), catalog.status(record))
        for record in store.feature_sets()
    ]
    return CatalogueInfo(store.location, store.schema_version, store.count_images(), sets)
