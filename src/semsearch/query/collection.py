"""Collections: the folders people index and browse, with their images, class labels and
feature sets, and searches scoped to one collection (what the web app shows)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from semsearch.errors import NotIndexedError
from semsearch.featureset import FeatureSet
from semsearch.images import folder_class
from semsearch.query.context import Context
from semsearch.query.hits import SearchResult, relabeled
from semsearch.query.service import KnownImageQuery, Query
from semsearch.ranking import WEIGHTED_DEPTH, weighted_precision_at_15
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


def collection_holding(store: Store, path: str) -> Collection | None:
    """Gives the collection whose folder is path, else the deepest one holding it, else
    None (path as indexing stores it: resolved)."""
    inside = [(cid, root) for cid, root in store.collections()
              if path == root or path.startswith(root.rstrip(os.sep) + os.sep)]
    if not inside:
        return None
    cid, root = max(inside, key=lambda item: len(item[1]))
    return _collection(cid, root)


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


def default_feature_set(session: Context, collection: Collection) -> FeatureSetRecord:
    """Gives the feature set a view of the collection starts on: the configured default if
    the collection has its vectors, else the one with the most of them."""
    default = session.models.feature_set()
    try:
        record = session.store.feature_set(default, session.models.input_key(default))
    except NotIndexedError:
        record = None
    if record is not None and session.store.has_vectors_under(record.id, collection.root):
        return record
    sets = collection_feature_sets(session.store, collection)
    if not sets:
        raise NotIndexedError(f"collection {collection.name} has no vectors yet; run "
                              f"`semsearch index {collection.root}`")
    return max(sets, key=lambda item: item.vectors).record


def resolve_feature_set(session: Context, collection: Collection,
                        name: str | None) -> FeatureSetRecord:
    """Gives the stored feature set named (`model@layer/pool[:adapter]`), or the
    collection's default one when no name is given."""
    if not name:
        return default_feature_set(session, collection)
    fs = FeatureSet.parse(name)
    return session.store.feature_set(fs, session.models.input_key(fs))


def search_collection(session: Context, collection: Collection, query: Query, *,
                      feature_set: str | None = None, metric: str | None = None,
                      k: int = 15) -> SearchResult:
    """Gives the query's nearest images within the collection, each labeled with its class
    and marked same-class or not, with the query's weighted precision at 15 when the query
    is one of its images in a class folder."""
    record = resolve_feature_set(session, collection, feature_set)
    if not session.store.has_vectors_under(record.id, collection.root):
        raise NotIndexedError(f"collection {collection.name} has no {record.name} vectors; "
                              f"index it with that feature set first")
    result = session.search_service().search(
        query, feature_set=record, metric=session.metric(metric), k=max(k, WEIGHTED_DEPTH),
        expand_k=session.config.expand_k, within=collection.root)
    label = query_label(session.store, collection, query)
    weighted = None
    if label is not None:
        relevant = [collection.label(hit.path) == label for hit in result.hits]
        weighted = float(weighted_precision_at_15(np.array([relevant[:WEIGHTED_DEPTH]]))[0])
    return replace(relabeled(result, collection.label, label, k), weighted_p15=weighted,
                   title=session.models.title(record.feature_set))


def query_label(store: Store, collection: Collection, query: Query) -> str | None:
    """Gives the query's class in the collection when it is one of its indexed images."""
    if isinstance(query, KnownImageQuery):
        return collection.label(store.image(query.image_id).path)
    return None


def labeled(session: Context, collection: Collection, result: SearchResult,
            query: Query) -> SearchResult:
    """Gives a result of a search by words or a focus class with its hits labeled by
    their classes in the collection (and the query's, for an indexed image)."""
    return relabeled(result, collection.label, query_label(session.store, collection, query))
