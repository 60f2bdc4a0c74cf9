"""A query written as text (a file, an indexed image's id, or words) answered with the
settings, and which stored feature set a search uses when none is named."""

from __future__ import annotations

import os

from semsearch.embed.hub import Models
from semsearch.errors import NotIndexedError
from semsearch.featureset import FeatureSet
from semsearch.images import is_supported
from semsearch.query.context import Context
from semsearch.query.focus import focused_search
from semsearch.query.service import SearchResult, written_id
from semsearch.store import FeatureSetRecord, Store


def indexed_feature_set(store: Store, models: Models, fs: FeatureSet | None) -> FeatureSetRecord:
    """Gives the stored feature set to search: the one asked for, else the default one if
    indexed, else the only one in the store."""
    if fs is not None:
        return store.feature_set(fs, models.input_key(fs))
    default = models.feature_set()
    stored = store.feature_sets()
    for record in stored:
        if record.feature_set == default and record.preprocessing == models.input_key(default):
            return record
    if len(stored) == 1:
        return stored[0]
    if not stored:
        raise NotIndexedError(
            f"the catalogue {store.location} is empty; run `semsearch index FOLDER` first")
    raise NotIndexedError(
        "several feature sets are indexed; choose one with --model/--layer/--pool: "
        + ", ".join(r.name for r in stored))


def search_written(ctx: Context, query: str, *, feature_set: FeatureSet | None = None,
                   k: int | None = None) -> SearchResult:
    """Gives the nearest images to a query written as text (a file, or an indexed id), with
    the configured metric, k and expansion."""
    service = ctx.search_service()
    resolved = service.resolve(query)
    record = indexed_feature_set(ctx.store, ctx.models, feature_set)
    return service.search(resolved, feature_set=record, metric=ctx.metric(),
                          k=k or ctx.config.k, expand_k=ctx.config.expand_k)


def focused_written(ctx: Context, query: str, focus: str, *,
                    feature_set: FeatureSet | None = None, k: int | None = None) -> SearchResult:
    """Gives the nearest images to a query written as text with respect to one class (see
    query.focus.focused_search)."""
    resolved = ctx.search_service().resolve(query)
    record = indexed_feature_set(ctx.store, ctx.models, feature_set)
    return focused_search(ctx, resolved, record, focus, k=k or ctx.config.k)


def means_words(query: str) -> bool:
    """Gives whether a query means words: not an image file, not written like an image file
    name (a mistyped path is an error), and not an image id."""
    text = query.strip()
    return not (os.path.isfile(text) or is_supported(text) or written_id(text) is not None)
