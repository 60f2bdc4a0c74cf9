"""What every search gives back, whatever it searched by (an image, words, a focus class) and
wherever (the whole catalogue, or one collection): a ranked list of one hit type."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from semsearch.store import ImageRecord, Store


@dataclass(frozen=True)
class Hit:
    """One ranked image, closest first. `distance` is in the search's metric (smaller is
    closer); `score` is comparable across metrics (calibrated in [0, 1] for a search by
    image, the cosine similarity for words and focus); `similarity` is what a person reads,
    in percent; `label` is the image's class where it was searched ("" in no class folder),
    and `same_class` whether that is the query's class (None when either has none)."""

    rank: int
    image: ImageRecord
    distance: float
    score: float
    similarity: float
    label: str
    same_class: bool | None = None

    @property
    def image_id(self) -> int:
        return self.image.id

    @property
    def path(self) -> str:
        return self.image.path


@dataclass(frozen=True)
class FocusClass:
    """The class a focused search weighs channels by."""

    index: int
    name: str


@dataclass(frozen=True)
class SearchResult:
    """A ranked list of hits, with what ranked them and how long it took. `query_label` is
    the query's class when it is a labeled image of the collection searched, and
    `weighted_p15` its score in ConvNet Playground's weighted precision at 15. `title` and
    `metric_title` say what `feature_set` and `metric` mean in words (empty: not given)."""

    query: str
    feature_set: str
    metric: str
    hits: list[Hit]
    embed_ms: float
    search_ms: float
    query_label: str | None = None
    weighted_p15: float | None = None
    focus: FocusClass | None = None
    title: str = ""
    metric_title: str = ""


def similarity_percent(metric: str, distance: float, score: float) -> float:
    """Gives a hit's similarity in percent: cosine similarity where the metric is cosine (it
    reads naturally as a percentage), else the calibrated score, which puts every
    near-duplicate at 100 %."""
    return 100 * max(0.0, 1 - distance) if metric == "cosine" else 100 * score


def cosine_hit(rank: int, image: ImageRecord, cosine: float) -> Hit:
    """Gives the hit of an image ranked by a cosine similarity (words, focus)."""
    return Hit(rank, image, 1 - cosine, cosine, 100 * max(cosine, 0.0), image.label)


def best_existing(store: Store, ids: npt.NDArray[np.int64], scores: npt.NDArray[np.floating],
                  k: int, exclude: int | None = None) -> list[Hit]:
    """Gives the k highest-scoring (cosine) images whose files still exist, leaving out
    `exclude`; records are read a chunk at a time, so deleted files only cost a little
    more."""
    order = np.argsort(-scores, kind="stable")
    hits: list[Hit] = []
    for start in range(0, len(order), 4 * k + 1):
        chunk = order[start:start + 4 * k + 1]
        images = store.images(ids[chunk])
        for i in chunk:
            image = images.get(int(ids[i]))
            if image is None or image.id == exclude or not os.path.isfile(image.path):
                continue
            hits.append(cosine_hit(len(hits) + 1, image, float(scores[i])))
            if len(hits) == k:
                return hits
    return hits


def relabeled(result: SearchResult, label_of: Callable[[str], str | None],
              query_label: str | None, k: int | None = None) -> SearchResult:
    """Gives the result with each hit labeled by its class in a collection (label_of maps
    a path to it) and marked same-class or not, keeping the first k hits."""
    hits: Sequence[Hit] = result.hits[:k] if k is not None else result.hits
    marked = []
    for hit in hits:
        label = label_of(hit.path) or ""
        same = (label == query_label) if query_label is not None else None
        marked.append(replace(hit, label=label, same_class=same))
    return replace(result, hits=marked, query_label=query_label)
