"""Focused search: images similar to a query with respect to one class of interest (similar
cats, not similar bottles). Each channel of the classifier's input layer is weighted by how
much the classifier counts it as evidence for the class (its positive weight), in the query
and in every gallery vector, before the cosine: what the class does not look at stops
counting."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from semsearch.errors import FeatureSetError, QueryError
from semsearch.index.metric import Metric, metric_title
from semsearch.query.collection import Collection, labeled, resolve_feature_set
from semsearch.query.context import Context
from semsearch.query.hits import FocusClass, SearchResult, best_existing
from semsearch.query.service import Query
from semsearch.store import FeatureSetRecord
from semsearch.vectors import l2_normalize

Vectors = npt.NDArray[np.float32]


def resolve_class(session: Context, words: str) -> FocusClass:
    """Gives the ImageNet class the words name: a class name or synonym exactly, else the
    class whose embedding is nearest the words'."""
    from semsearch.query.text_model import check_query, class_names

    text = check_query(words).lower()
    names = class_names()
    for index, group in enumerate(names):
        if text in (name.lower() for name in group):
            return FocusClass(index, group[0])
    model = session.text_model()
    index = int(np.argmax(model.classes() @ model.embed([text])[0]))
    return FocusClass(index, names[index][0])


def channel_weights(session: Context, record: FeatureSetRecord, class_index: int) -> Vectors:
    """Gives a weight per dimension of the feature set: each model's classifier weights for
    the class, negative ones set to 0. The feature set must be the classifiers' input layer
    (pooled any way)."""
    parts = []
    for model in record.feature_set.models:
        spec = session.models.spec(model)
        if spec.classifier is None or record.feature_set.layer != spec.default_layer:
            raise FeatureSetError(
                f"focus re-weights the classifier's input channels: it needs a feature set at "
                f"{spec.default_layer} of a model with a classifier, not {record.name}")
        net, _ = session.models.network(model)
        weights = dict(net.named_modules())[spec.classifier].weight.detach().numpy()
        if not 0 <= class_index < len(weights):
            raise QueryError(f"{model} has {len(weights)} classes; no class {class_index}")
        parts.append(np.maximum(weights[class_index], 0.0).astype(np.float32))
    joined = np.concatenate(parts)
    if joined.shape[0] != record.dim:
        raise FeatureSetError(f"{record.name} has {record.dim} dimensions, the classifiers "
                              f"{joined.shape[0]}: focus needs the pooled classifier input")
    return joined


def focused_search(session: Context, query: Query, record: FeatureSetRecord, focus: str,
                   *, k: int = 10, within: str = os.sep) -> SearchResult:
    """Gives the k images most similar to the query with respect to the class the words
    `focus` name (scored by the cosine of the re-weighted vectors)."""
    started = time.perf_counter()
    target = resolve_class(session, focus)
    weights = channel_weights(session, record, target.index)
    vector, exclude = session.search_service().query_vector(query, record)
    ids, gallery = session.store.vectors_under(record.id, within)
    q = l2_normalize((vector * weights)[None, :])[0]
    scores = l2_normalize(gallery * weights) @ q
    hits = best_existing(session.store, ids, scores, k, exclude)
    return SearchResult(query.describe(), record.name, "cosine", hits, 0.0,
                        (time.perf_counter() - started) * 1000, focus=target)


def focus_collection(session: Context, collection: Collection, query: Query,
                     feature_set: str | None, focus: str, *, k: int = 10) -> SearchResult:
    """Gives the k images of the collection most similar to the query with respect to the
    class the words `focus` name (in the collection's default feature set when none is
    named), labeled by class and marked same-class when the query is one of its images in
    a class folder."""
    record = resolve_feature_set(session, collection, feature_set)
    result = labeled(session, collection,
                     focused_search(session, query, record, focus, k=k, within=collection.root),
                     query)
    name = result.focus.name if result.focus else focus
    return replace(result, feature_set=f"{result.feature_set}, focus on {name}",
                   title=f"{session.models.title(record.feature_set)}, focused on {name}",
                   metric_title=metric_title(Metric()))
