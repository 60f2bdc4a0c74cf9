"""Collections: the folders people index and browse, with their images, class labels and
feature sets, and searches scoped to one collection (what the web app shows)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from semsearch.errors import NotIndexedError
from semsearch.evaluate import WEIGHTED_DEPTH, weighted_precision_at_15
from semsearch.featureset import FeatureSet
from semsearch.search import Hit, KnownImageQuery, Query
from semsearch.session import Session
from semsearch.store import FeatureSetRecord, ImageRecord, Store


@dataclass(frozen=True)
class Collection:
    id: int
    root: str
    name: str
    images: int
    labels: dict[str, int]  # class folder name -> image count

    @property
    def labeled(self) -> bool:
        """Gives whether the images come in two classes or more (one folder per class)."""
        return len(self.labels) >= 2


def _collection(store: Store, cid: int, root: str) -> Collection:
    images = store.images_under(root)
    labels = Counter(record.label for record in images.values())
    return Collection(cid, root, os.path.basename(root) or root, len(images),
                      dict(sorted(labels.items())))


def list_collections(store: Store) -> list[Collection]:
    """Gives every collection with its image count and labels, oldest first."""
    return [_collection(store, cid, root) for cid, root in store.collections()]


def get_collection(store: Store, cid: int) -> Collection:
    """Gives one collection, or raises NotIndexedError."""
    for known, root in store.collections():
        if known == cid:
            return _collection(store, cid, root)
    raise NotIndexedError(f"no collection with id {cid}")


def collection_images(store: Store, collection: Collection) -> list[ImageRecord]:
    """Gives the collection's images ordered by class, then path."""
    return sorted(store.images_under(collection.root).values(),
                  key=lambda record: (record.label, record.path))


@dataclass(frozen=True)
class CollectionFeatureSet:
    record: FeatureSetRecord
    vectors: int  # how many of the collection's images it has vectors for


def collection_feature_sets(store: Store, collection: Collection) -> list[CollectionFeatureSet]:
    """Gives the feature sets with vectors for the collection's images, in creation order."""
    counts = store.vector_counts_under(collection.root)
    return [CollectionFeatureSet(record, counts[record.id]) for record in store.feature_sets()
            if counts.get(record.id)]


def default_feature_set(session: Session, collection: Collection) -> FeatureSetRecord:
    """Gives the feature set a view of the collection starts on: the configured default if
    the collection has its vectors, else the one with the most of them."""
    sets = collection_feature_sets(session.store, collection)
    if not sets:
        raise NotIndexedError(f"collection {collection.name} has no vectors yet; run "
                              f"`semsearch index {collection.root}`")
    default = session.feature_set()
    key = session.input_key(default)
    for item in sets:
        if item.record.feature_set == default and item.record.preprocessing == key:
            return item.record
    return max(sets, key=lambda item: item.vectors).record


def resolve_feature_set(session: Session, collection: Collection,
                        name: str | None) -> FeatureSetRecord:
    """Gives the stored feature set named (`model@layer/pool[:adapter]`), or the
    collection's default one when no name is given."""
    if not name:
        return default_feature_set(session, collection)
    fs = FeatureSet.parse(name)
    return session.store.feature_set(fs, session.input_key(fs))


@dataclass(frozen=True)
class CollectionHit:
    hit: Hit
    same_class: bool | None  # None when the collection has no classes or the query no label
    similarity: float  # percent: cosine similarity for cosine, else the calibrated score


@dataclass(frozen=True)
class CollectionSearch:
    query: str
    query_label: str | None
    feature_set: str
    metric: str
    hits: list[CollectionHit]
    weighted_p15: float | None  # the original's score of this one query, when labels exist
    embed_ms: float
    search_ms: float


def search_collection(session: Session, collection: Collection, query: Query, *,
                      feature_set: str | None = None, metric: str | None = None,
                      k: int = 15) -> CollectionSearch:
    """Gives the query's nearest images within the collection, each marked same-class or
    not, with the query's weighted precision at 15 when the collection is labeled and the
    query is one of its images."""
    record = resolve_feature_set(session, collection, feature_set)
    chosen = session.metric(metric)
    result = session.search_service().search(
        query, feature_set=record, metric=chosen, k=max(k, WEIGHTED_DEPTH),
        expand_k=session.config.expand_k, within=collection.root)
    label = None
    if isinstance(query, KnownImageQuery) and collection.labeled:
        label = session.store.image(query.image_id).label
    relevant = [hit.label == label for hit in result.hits] if label is not None else None
    weighted = None
    if relevant is not None:
        weighted = float(weighted_precision_at_15(np.array([relevant[:WEIGHTED_DEPTH]]))[0])
    # Cosine similarity reads naturally as a percentage; the calibrated score would put
    # every near-duplicate at 100%.
    hits = [CollectionHit(hit, relevant[i] if relevant is not None else None,
                          100 * max(0.0, 1 - hit.distance) if chosen.name == "cosine"
                          else 100 * hit.score)
            for i, hit in enumerate(result.hits[:k])]
    return CollectionSearch(result.query, label, result.feature_set, result.metric, hits,
                            weighted, result.embed_ms, result.search_ms)
