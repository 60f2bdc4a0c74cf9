"""Focused search: images similar to a query with respect to one class of interest (similar
cats, not similar bottles). Each channel of the classifier's input layer is weighted by how
much the classifier counts it as evidence for the class (its positive weight), in the query
and in every gallery vector, before the cosine: what the class does not look at stops
counting."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.collections import (
    Collection,
    CollectionSearch,
    resolve_feature_set,
    scored_hits,
)
from semsearch.errors import FeatureSetError, QueryError
from semsearch.expansion import l2_normalize
from semsearch.search import ImageQuery, KnownImageQuery, Query, ScoredImage, best_existing
from semsearch.session import Session
from semsearch.store import FeatureSetRecord

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FocusClass:
    index: int
    name: str


def resolve_class(session: Session, words: str) -> FocusClass:
    """Gives the ImageNet class the words name: a class name or synonym exactly, else the
    class whose embedding is nearest the words'."""
    from semsearch.text import check_query, class_names

    text = check_query(words).lower()
    names = class_names()
    for index, group in enumerate(names):
        if text in (name.lower() for name in group):
            return FocusClass(index, group[0])
    model = session.text_model()
    index = int(np.argmax(model.classes() @ model.embed([text])[0]))
    return FocusClass(index, names[index][0])


def channel_weights(session: Session, record: FeatureSetRecord, class_index: int) -> Vectors:
    """Gives a weight per dimension of the feature set: each model's classifier weights for
    the class, negative ones set to 0. The feature set must be the classifiers' input layer
    (pooled any way)."""
    parts = []
    for model in record.feature_set.model.split("+"):
        spec = session.spec(model)
        if spec.classifier is None or record.feature_set.layer != spec.default_layer:
            raise FeatureSetError(
                f"focus re-weights the classifier's input channels: it needs a feature set at "
                f"{spec.default_layer} of a model with a classifier, not {record.name}")
        net, _ = session.network(model)
        weights = dict(net.named_modules())[spec.classifier].weight.detach().numpy()
        if not 0 <= class_index < len(weights):
            raise QueryError(f"{model} has {len(weights)} classes; no class {class_index}")
        parts.append(np.maximum(weights[class_index], 0.0).astype(np.float32))
    joined = np.concatenate(parts)
    if joined.shape[0] != record.dim:
        raise FeatureSetError(f"{record.name} has {record.dim} dimensions, the classifiers "
                              f"{joined.shape[0]}: focus needs the pooled classifier input")
    return joined


FocusHit = ScoredImage  # score: cosine of the re-weighted vectors


@dataclass(frozen=True)
class FocusResult:
    query: str
    focus: FocusClass
    feature_set: str
    hits: list[FocusHit]
    seconds: float


def focused_search(session: Session, query: Query, record: FeatureSetRecord, focus: str,
                   *, k: int = 10, within: str = os.sep) -> FocusResult:
    """Gives the k images most similar to the query with respect to the class the words
    `focus` name."""
    started = time.perf_counter()
    target = resolve_class(session, focus)
    weights = channel_weights(session, record, target.index)
    exclude = None
    if isinstance(query, KnownImageQuery):
        vector = session.store.vector(record.id, query.image_id)
        exclude = query.image_id
        if vector is None:
            raise QueryError(f"image {query.image_id} has no {record.name} vector")
    elif isinstance(query, ImageQuery):
        source = query.path if query.path is not None else query.data
        if source is None:
            raise QueryError("an image query needs a path or image bytes")
        vector = session.extractor(record.feature_set).embed_image(source, query.describe())
        exclude = query.exclude
    ids, gallery = session.store.vectors_under(record.id, within)
    q = l2_normalize((vector * weights)[None, :])[0]
    scores = l2_normalize(gallery * weights) @ q
    hits = best_existing(session.store, ids, scores, k, exclude)
    return FocusResult(query.describe(), target, record.name, hits,
                       time.perf_counter() - started)


def focus_collection(session: Session, collection: Collection, query: Query,
                     feature_set: str | None, focus: str, *, k: int = 10) -> CollectionSearch:
    """Gives the k images of the collection most similar to the query with respect to the
    class the words `focus` name (in the collection's default feature set when none is
    named), marked same-class when the query is one of its images in a class folder."""
    record = resolve_feature_set(session, collection, feature_set)
    result = focused_search(session, query, record, focus, k=k, within=collection.root)
    label = None
    if isinstance(query, KnownImageQuery):
        label = collection.label(session.store.image(query.image_id).path)
    # Nothing is embedded for an indexed image; the whole time is the search's.
    return CollectionSearch(result.query, label,
                            f"{result.feature_set}, focus on {result.focus.name}", "cosine",
                            scored_hits(collection, result.hits, label), None, 0.0,
                            result.seconds * 1000)
