"""Text queries and tags over the catalogue: the images' class probabilities (the `probs`
layer of the configured model, kept as a feature set) turned into text-space vectors
(semsearch.query.text_model) and matched with a query in words."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from semsearch.errors import FeatureSetError, NotIndexedError
from semsearch.featureset import FeatureSet, split_models
from semsearch.images import check_unmoved, real_path
from semsearch.index.metric import Metric, metric_title
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import Progress
from semsearch.models.layers import PROBS
from semsearch.query.collection import Collection
from semsearch.query.context import Context
from semsearch.query.hits import SearchResult, best_existing, relabeled
from semsearch.query.text_model import (
    Tag,
    check_query,
    class_names,
    class_probabilities,
    conse,
    tags_for,
)
from semsearch.store import FeatureSetRecord

# Text vectors by (catalogue, feature set, input key, version, folder): kept for the few last
# used, and never shared between catalogues whose feature sets happen to have the same id.
_cache: dict[tuple[str, int, str, int, str],
             tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
_cache_lock = threading.Lock()
_CACHE_KEPT = 8


def text_feature_set(session: Context) -> FeatureSet:
    """Gives the feature set whose vectors text search reads: the configured model's (or
    composite's) class probabilities."""
    model = session.models.plain_feature_set().model
    for part in split_models(model):
        spec = session.models.spec(part)
        if spec.classifier is None or spec.class_names is None:
            raise FeatureSetError(f"search by words reads an ImageNet classifier, which {part} "
                                  "does not have; use --model lite0, lite1 or lite2")
    return FeatureSet(model, PROBS, "avg")


_indexed_at: dict[tuple[str, str], float] = {}
_folder_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def index_text(session: Context, root: str, progress: Progress | None = None,
               max_age: float = 0.0) -> int:
    """Brings the class probabilities of the images under root up to date (embedding only
    what is new); gives how many were embedded. With max_age, a folder brought up to date
    less than that many seconds ago is not scanned again (a server's repeated queries)."""
    key = (session.store.catalogue_id, real_path(root))
    if max_age and time.monotonic() - _indexed_at.get(key, -1e9) < max_age:
        return 0
    with _locks_guard:
        lock = _folder_locks.setdefault(key, threading.Lock())
    with lock:  # one scan of a folder at a time, so no image is embedded twice
        if max_age and time.monotonic() - _indexed_at.get(key, -1e9) < max_age:
            return 0
        extractor = session.models.extractor(text_feature_set(session))
        report = index_folder(session.store, extractor, root,
                              batch_size=session.config.batch_size,
                              workers=session.config.workers, progress=progress)
        if max_age:
            _indexed_at[key] = time.monotonic()
        return report.embedded


def _record(session: Context) -> FeatureSetRecord:
    fs = text_feature_set(session)
    try:
        return session.store.feature_set(fs, session.models.input_key(fs))
    except NotIndexedError:
        raise NotIndexedError(
            f"nothing is indexed for search by words with {fs.model} yet ({fs}); run "
            f"`semsearch index FOLDER --text --model {fs.model}`") from None


def text_vectors(session: Context, root: str = os.sep
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Gives (image ids, text-space vectors) of the images under root, cached until their
    class probabilities change."""
    root = real_path(root)
    record = _record(session)
    key = (session.store.catalogue_id, record.id, record.preprocessing,
           session.store.version(record.id), root)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    ids, probs = session.store.vectors_under(record.id, root)
    vectors = conse(class_probabilities(probs), session.text_model().classes())
    with _cache_lock:
        _cache[key] = (ids, vectors)
        while len(_cache) > _CACHE_KEPT:
            _cache.pop(next(iter(_cache)))
    return ids, vectors


def words_adapter(session: Context, name: str | None) -> str | None:
    """Gives the adapter's name if it was trained for words (`adapt --text`), else None."""
    if not name:
        return None
    try:
        return name if json.loads(session.store.adapter(name).info).get("text") else None
    except NotIndexedError:
        return None


def adapted_text_vectors(session: Context, adapter: str, root: str = os.sep
                         ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Gives (image ids, vectors) of the images under root in a text adapter's space
    (`semsearch adapt --text`): its projection of their features."""
    record = session.store.adapter(adapter)
    if not json.loads(record.info).get("text"):
        raise FeatureSetError(f"adapter {adapter} was not trained for words; train one with "
                              "`semsearch adapt FOLDER --name NAME --text`")
    fs = record.base.adapted(adapter)
    stored = session.store.feature_set(fs, session.models.input_key(fs))
    return session.store.vectors_under(stored.id, real_path(root))


def search_text(session: Context, query: str, *, k: int = 10, root: str = os.sep,
                adapter: str | None = None) -> SearchResult:
    """Gives the k images under root whose text vectors are nearest the words: zero-shot,
    or in a text adapter's space."""
    text = check_query(query)
    started = time.perf_counter()
    model = session.text_model()
    q = model.embed([text])[0]
    embedded = time.perf_counter()
    ids, vectors = (adapted_text_vectors(session, adapter, root) if adapter
                    else text_vectors(session, root))
    hits = best_existing(session.store, ids, vectors @ q, k)
    done = time.perf_counter()
    source = f"adapter {adapter}" if adapter else str(text_feature_set(session))
    return SearchResult(text, source, "cosine", hits, (embedded - started) * 1000,
                        (done - embedded) * 1000)


def search_collection_words(session: Context, collection: Collection, query: str, *,
                            k: int = 10, fresh_within: float = 60.0) -> SearchResult:
    """Gives the k images of the collection whose text vectors are nearest the words, after
    embedding the class probabilities of its new images (a folder brought up to date less
    than `fresh_within` seconds ago is not scanned again: a server's repeated queries)."""
    check_query(query)  # an empty query is refused before the folder is scanned
    index_text(session, collection.root, max_age=fresh_within)
    result = relabeled(search_text(session, query, k=k, root=collection.root),
                       collection.label, None)
    return replace(result, feature_set=f"{result.feature_set} (words)",
                   title=f"{session.models.title(text_feature_set(session))}, matched to the words",
                   metric_title=metric_title(Metric()))


def fresh_image_tags(session: Context, image_id: int, k: int = 5) -> list[Tag]:
    """Gives the k words nearest an indexed image's text vector, first embedding its file's
    class probabilities if it has none yet."""
    path = session.store.image(image_id).path  # an unknown id says so first
    try:
        return image_tags(session, image_id, k)
    except NotIndexedError:
        check_unmoved(path, f"image {image_id}")
        index_text(session, path)
        return image_tags(session, image_id, k)


def image_tags(session: Context, image_id: int, k: int = 5) -> list[Tag]:
    """Gives the k words nearest an indexed image's text vector."""
    record = _record(session)
    vector = session.store.vector(record.id, image_id)
    if vector is None:
        session.store.image(image_id)  # an unknown id says so
        raise NotIndexedError(f"image {image_id} has no class probabilities yet; index its "
                              "folder with --text")
    model = session.text_model()
    text_vector = conse(class_probabilities(vector[None, :]), model.classes())[0]
    return tags_for(text_vector, model.classes(), class_names(), k)
