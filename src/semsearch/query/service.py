"""SearchService: one place where a query (an image file, image bytes, or an indexed image)
becomes ranked hits, for every front end."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.embed.extractors import Extractor
from semsearch.errors import NotIndexedError, QueryError
from semsearch.images import printable, real_path
from semsearch.index.catalog import IndexCatalog, LoadedIndex
from semsearch.index.metric import Metric, metric_title
from semsearch.index.protocol import VectorIndex
from semsearch.query.hits import Hit, SearchResult, similarity_percent
from semsearch.store import FeatureSetRecord, ImageRecord, Store


@dataclass(frozen=True)
class ImageQuery:
    """An image to embed: a file path, or encoded bytes (uploads). `exclude` is the id of an
    indexed image the query stands for (its file changed since), left out of the results."""

    path: str | None = None
    data: bytes | None = None
    exclude: int | None = None

    def describe(self) -> str:
        return printable(self.path) if self.path else f"<{len(self.data or b'')} bytes>"


@dataclass(frozen=True)
class KnownImageQuery:
    """An indexed image, by id; it is left out of its own results."""

    image_id: int

    def describe(self) -> str:
        return f"id:{self.image_id}"


Query = ImageQuery | KnownImageQuery


def written_id(text: str) -> str | None:
    """Gives the digits of an image id written as `id:N` or `N`, or None if text is not one."""
    number = text[3:] if text.startswith("id:") else text
    return number if number.isascii() and number.isdigit() else None


# A folder of at most this many images, under half of its index, is searched on its own.
WITHIN_MAX = 50_000


class SearchService:
    """Answers queries against the store's indexes. The model is loaded only when a query
    needs embedding; indexes are loaded once and reloaded when the store changes."""

    def __init__(
        self,
        store: Store,
        catalog: IndexCatalog,
        extractor_for: Callable[[FeatureSetRecord], Extractor],
    ) -> None:
        self.store = store
        self.catalog = catalog
        self._extractor_for = extractor_for
        self._indexes: dict[tuple[int, str, str, str, int],
                            tuple[FeatureSetRecord, LoadedIndex]] = {}
        self._lock = threading.Lock()
        # Exact indexes of one folder's images, by (index, folder); see _within.
        self._subsets: dict[tuple[int, str], tuple[weakref.ref[VectorIndex],
                                                   npt.NDArray[np.int64], VectorIndex]] = {}

    def resolve(self, text: str) -> Query:
        """Gives the query that text names: an existing file (indexed or not), `id:N`, or a
        bare number that is an indexed image id."""
        text = text.strip()
        if not text:
            raise QueryError("empty query; give an image file or an indexed image id")
        if os.path.exists(text):
            if os.path.isdir(text):
                raise QueryError(f"{printable(text)} is a folder; give one image file")
            if not os.path.isfile(text):
                raise QueryError(f"{printable(text)} is not a regular file")
            path = real_path(text)
            if printable(path) != path:
                return ImageQuery(path=path)  # such a name cannot be in the catalogue
            record = self.store.image_by_path(path)
            if record is None:
                return ImageQuery(path=path)
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
                # Changed since it was indexed: its stored vector no longer describes it.
                return ImageQuery(path=path, exclude=record.id)
            return KnownImageQuery(record.id)
        number = written_id(text)
        if number is not None:
            if len(number) > 18:
                raise NotIndexedError(f"no image with id {number} in the catalogue")
            self.store.image(int(number))  # raises NotIndexedError if absent
            return KnownImageQuery(int(number))
        raise QueryError(
            f"{printable(text)!r} is neither an existing image file nor an image id"
        )

    def index_for(self, record: FeatureSetRecord, metric: Metric,
                  expand_k: int = 0) -> LoadedIndex:
        """Gives the fresh index of the feature set for the metric (and expansion)."""
        # A replaced adapter's feature set may get a deleted set's id back; its name and
        # input key tell them apart.
        key = (record.id, record.name, record.preprocessing, metric.tag, expand_k)
        with self._lock:
            version = self.store.version(record.id)
            cached = self._indexes.get(key)
            if cached and cached[0].version == version:
                return cached[1]
            current = self.store.feature_set(record.feature_set, record.preprocessing)
            loaded = self.catalog.get(current, metric, expand_k)
            self._indexes[key] = (current, loaded)
            return loaded

    def search(
        self, query: Query, *, feature_set: FeatureSetRecord, metric: Metric, k: int = 10,
        expand_k: int = 0, within: str | None = None,
    ) -> SearchResult:
        """Gives the k nearest indexed images to the query, closest first (only those at or
        below the folder `within`, if given). With expand_k, the gallery is searched with
        database-side augmentation (cosine only): an indexed query uses its augmented vector,
        an outside query is expanded to match."""
        if k <= 0:
            raise QueryError(f"k must be positive, not {k}")
        started = time.perf_counter()
        loaded = self.index_for(feature_set, metric, expand_k)
        before_embedding = time.perf_counter()
        vector, exclude = self._query_vector(query, feature_set, loaded)
        embed_ms = (time.perf_counter() - before_embedding) * 1000
        keep, images = self._nearest(loaded, vector, k, exclude,
                                     real_path(within) if within else None)
        score = loaded.calibration.scores(np.array([d for d, _ in keep]))
        hits = [
            Hit(rank, images[image_id], d, float(s), similarity_percent(metric.name, d, float(s)),
                images[image_id].label)
            for rank, ((d, image_id), s) in enumerate(zip(keep, score, strict=True), start=1)
        ]
        total_ms = (time.perf_counter() - started) * 1000
        shown = str(metric) + (f" + DBA k={loaded.expand_k}" if loaded.expand_k else "")
        return SearchResult(
            query=query.describe(),
            feature_set=feature_set.name,
            metric=shown,
            hits=hits,
            embed_ms=embed_ms,
            search_ms=total_ms - embed_ms,
            metric_title=metric_title(metric, loaded.expand_k),
        )

    def query_vector(self, query: Query, feature_set: FeatureSetRecord
                     ) -> tuple[npt.NDArray[np.float32], int | None]:
        """Gives the query's vector in the feature set, as the gallery was embedded (an
        indexed image's stored vector, else embedded), and the indexed image to leave out
        of its results."""
        if isinstance(query, KnownImageQuery):
            vector = self.store.vector(feature_set.id, query.image_id)
            if vector is None:
                image = self.store.image(query.image_id)
                if not os.path.exists(image.path):
                    raise NotIndexedError(
                        f"image {image.id} has no {feature_set.name} vector and its file "
                        f"{image.path} is gone; index it with that feature set first"
                    )
                vector = self._extractor_for(feature_set).embed_image(image.path)
            return vector, query.image_id
        source = query.path if query.path is not None else query.data
        if source is None:
            raise QueryError("an image query needs a path or image bytes")
        vector = self._extractor_for(feature_set).embed_image(source, name=query.describe())
        return vector, query.exclude

    def _query_vector(
        self, query: Query, feature_set: FeatureSetRecord, loaded: LoadedIndex
    ) -> tuple[npt.NDArray[np.float32], int | None]:
        """Gives the vector to search the index with, and the indexed image to leave out:
        an indexed image with DBA on uses its augmented vector; any other is expanded to
        match the index."""
        if isinstance(query, KnownImageQuery) and loaded.expand_k:
            try:
                return loaded.known_vector(query.image_id), query.image_id
            except KeyError:  # not in this index (added or removed since it was built)
                pass
        vector, exclude = self.query_vector(query, feature_set)
        return loaded.expand(vector), exclude

    def _within(self, index: VectorIndex, folder: str) -> VectorIndex | None:
        """Gives an exact index of just the folder's images when they are a small part of a
        larger exact index (another collection shares the feature set), so a search of the
        folder needs no widening over the others; None otherwise. Kept while the folder holds
        the same images."""
        if not index.exact:
            return None  # it cannot make one (see VectorIndex.subset)
        ids = self.store.ids_under(folder)
        if len(ids) > WITHIN_MAX or 2 * len(ids) >= len(index):
            return None
        key = (id(index), folder)
        with self._lock:
            cached = self._subsets.get(key)
        # The weak reference tells this index from a later one at the same address.
        if cached is not None and cached[0]() is index and np.array_equal(cached[1], ids):
            return cached[2]
        sub = index.subset(ids)
        if sub is None:
            return None
        with self._lock:
            if len(self._subsets) >= 16:  # indexes replaced since, or many folders
                self._subsets.pop(next(iter(self._subsets)))
            self._subsets[key] = (weakref.ref(index), ids, sub)
        return sub

    def _nearest(
        self, loaded: LoadedIndex, vector: npt.NDArray[np.float32], k: int, exclude: int | None,
        within: str | None = None,
    ) -> tuple[list[tuple[float, int]], dict[int, ImageRecord]]:
        """Gives the k nearest (distance, id) pairs whose file still exists (and lies within
        the folder, if given), and their records. Files deleted since indexing are passed
        over, asking for more if needed."""
        prefix = within.rstrip(os.sep) + os.sep if within else ""
        index = (self._within(loaded.index, within) if within else None) or loaded.index
        total = len(index)
        if not index.exact:
            # An approximate index asked for a large share of the collection would search
            # all of it (an HNSW graph walk that wide takes seconds): stop at a few thousand.
            total = min(total, max(2000, 50 * k))
        want = min(total, k + 1 + 8)
        while True:
            dist, ids = index.search(vector[None, :], want)
            pairs = [(float(d), int(i)) for d, i in zip(dist[0], ids[0], strict=True)
                     if i >= 0 and i != exclude]
            images = self.store.images(i for _, i in pairs)
            keep = [(d, i) for d, i in pairs
                    if i in images and images[i].path.startswith(prefix)
                    and os.path.exists(images[i].path)][:k]
            if len(keep) == k or want >= total:
                return keep, images
            want = min(total, want * 4)

