"""Collections: the folders people index and browse, with their images, class labels and
feature sets, and searches scoped to one collection (what the web app shows)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semsearch.errors import NotIndexedError
from semsearch.evaluate import WEIGHTED_DEPTH, weighted_precision_at_15
from semsearch.featureset import FeatureSet
from semsearch.images import folder_class
from semsearch.search import Hit, KnownImageQuery, Query, ScoredImage
from semsearch.session import Session
from semsearch.store import FeatureSetRecord, ImageRecord, Store


@dataclass(frozen=True)
class Collection:
    id: int
    root: str
    name: str

    def label(self, path: str) -> str | None:
        """Gives an image's class: its top sub-folder (None for a file directly in root)."""
        return folder_class(self.root, path)


@dataclass(frozen=True)
class CollectionSummary:
    collection: Collection
    images: int
    labels: dict[str, int]  # class -> image count ("" for images in no class folder)

    @property
    def labeled(self) -> bool:
        """Gives whether the images come in two classes or more (one folder per class)."""
        return len([label for label in self.labels if label]) >= 2


def _collection(cid: int, root: str) -> Collection:
    return Collection(cid, root, os.path.basename(root) or root)


def list_collections(store: Store) -> list[Collection]:
    """Gives every collection, oldest first."""
    return [_collection(cid, root) for cid, root in store.collections()]


def get_collection(store: Store, cid: int) -> Collection:
    """Gives one collection (a single indexed lookup), or raises NotIndexedError."""
    root = store.collection_root(cid)
    if root is None:
        raise NotIndexedError(f"no collection with id {cid}")
    return _collection(cid, root)


def summarize(store: Store, collection: Collection) -> CollectionSummary:
    """Gives the collection's image count and classes (reads every image record)."""
    images = store.images_under(collection.root)
    labels = Counter(collection.label(record.path) or "" for record in images.values())
    return CollectionSummary(collection, len(images), dict(sorted(labels.items())))


def collection_images(store: Store, collection: Collection) -> list[ImageRecord]:
    """Gives the collection's images whose files still exist, ordered by class, then
    path."""
    return sorted((record for record in store.images_under(collection.root).values()
                   if os.path.isfile(record.path)),
                  key=lambda record: (collection.label(record.path) or "", record.path))


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
    default = session.feature_set()
    try:
        record = session.store.feature_set(default, session.input_key(default))
    except NotIndexedError:
        record = None
    if record is not None and session.store.has_vectors_under(record.id, collection.root):
        return record
    sets = collection_feature_sets(session.store, collection)
    if not sets:
        raise NotIndexedError(f"collection {collection.name} has no vectors yet; run "
                              f"`semsearch index {collection.root}`")
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
    label: str  # the hit's class in the collection ("" when in no class folder)


def similarity_percent(cosine: float | None, calibrated: float = 0.0) -> float:
    """Gives the similarity a person reads, in percent: the cosine similarity (a negative one
    as 0) when the metric is cosine, else the calibrated score. Cosine similarity reads
    naturally as a percentage; the calibrated score would put every near-duplicate at
    100%."""
    return 100 * max(0.0, cosine) if cosine is not None else 100 * calibrated


def scored_hits(collection: Collection, hits: Sequence[ScoredImage],
                query_label: str | None) -> list[CollectionHit]:
    """Gives hits scored by cosine similarity (words, focus) as hits of the collection, marked
    same-class when the query has a class."""
    return [CollectionHit(
        Hit(h.rank, h.image.id, h.image.path, h.image.label, 1 - h.score, h.score),
        (collection.label(h.image.path) == query_label) if query_label else None,
        similarity_percent(h.score), collection.label(h.image.path) or "")
        for h in hits]


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
    not, with the query's weighted precision at 15, when the query is one of its images in a
    class folder."""
    record = resolve_feature_set(session, collection, feature_set)
    if not session.store.has_vectors_under(record.id, collection.root):
        raise NotIndexedError(f"collection {collection.name} has no {record.name} vectors; "
                              f"index it with that feature set first")
    chosen = session.metric(metric)
    result = session.search_service().search(
        query, feature_set=record, metric=chosen, k=max(k, WEIGHTED_DEPTH),
        expand_k=session.config.expand_k, within=collection.root)
    label = None
    if isinstance(query, KnownImageQuery):
        label = collection.label(session.store.image(query.image_id).path)
    relevant = ([collection.label(hit.path) == label for hit in result.hits]
                if label is not None else None)
    weighted = None
    if relevant is not None:
        weighted = float(weighted_precision_at_15(np.array([relevant[:WEIGHTED_DEPTH]]))[0])
    cosine = chosen.name == "cosine"
    hits = [CollectionHit(hit, relevant[i] if relevant is not None else None,
                          similarity_percent(1 - hit.distance if cosine else None, hit.score),
                          collection.label(hit.path) or "")
            for i, hit in enumerate(result.hits[:k])]
    return CollectionSearch(result.query, label, result.feature_set, result.metric, hits,
                            weighted, result.embed_ms, result.search_ms)
