"""Retrieval metrics on a labeled gallery (class = folder name), per query and averaged:
ConvNet Playground's weighted precision at 15, precision@k, recall@k, average precision
(mAP) and nearest-neighbour accuracy, with a per-class breakdown. Pure numpy.

Every image is a query against all the others; an image is relevant to a query when it has
the query's class."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from semsearch.index.exact import ExactIndex
from semsearch.index.metric import Metric

WEIGHTED_DEPTH = 15
# 15 + 14 + ... + 1: the weighted sum of a perfect top 15.
_WEIGHTED_MAX = WEIGHTED_DEPTH * (WEIGHTED_DEPTH + 1) // 2

Relevance = npt.NDArray[np.bool_]


# Queries are ranked at most this many at a time, and at most _CELLS rankings entries at a
# time, so a large gallery needs bounded memory, not n x n.
_CHUNK = 1024
_CELLS = 8_000_000


def _ranked_chunks(vectors: npt.NDArray[np.float32], metric: Metric
                   ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Gives (query rows, their rankings of all other vectors), a chunk of queries at a time."""
    n = len(vectors)
    index = ExactIndex.build(vectors, np.arange(n, dtype=np.int64), metric)
    step = max(1, min(_CHUNK, _CELLS // n))
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        _, found = index.search(vectors[rows], n)
        # Drop each query itself by identity, not by position: duplicates tie at distance 0.
        keep = found != rows[:, None]
        yield rows, found[keep].reshape(len(rows), n - 1)


def rank_neighbours(vectors: npt.NDArray[np.float32], metric: Metric) -> npt.NDArray[np.int64]:
    """Gives, for each vector, the indices of all other vectors from nearest to farthest."""
    return np.concatenate([ranked for _, ranked in _ranked_chunks(vectors, metric)])


def relevance(ranked: npt.NDArray[np.int64], labels: Sequence[str]) -> Relevance:
    """Gives, per query row, whether each ranked result has the query's class."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    return codes[ranked] == codes[:, None]


def weighted_precision_at_15(rel: Relevance) -> npt.NDArray[np.float64]:
    """Gives the original's score per query, in percent: a relevant result at rank i
    (0 to 14) adds 15 - i; the sum is divided by 120."""
    depth = min(WEIGHTED_DEPTH, rel.shape[1])
    weights = np.arange(WEIGHTED_DEPTH, WEIGHTED_DEPTH - depth, -1, dtype=np.float64)
    return rel[:, :depth] @ weights / _WEIGHTED_MAX * 100.0


def precision_at(rel: Relevance, k: int) -> npt.NDArray[np.float64]:
    return rel[:, :k].mean(axis=1, dtype=np.float64)


def recall_at(rel: Relevance, k: int) -> npt.NDArray[np.float64]:
    total = rel.sum(axis=1)
    return np.divide(rel[:, :k].sum(axis=1), total, out=np.zeros(len(rel)), where=total > 0)


def average_precision(rel: Relevance) -> npt.NDArray[np.float64]:
    """Gives AP per query over the full ranking (0 for a query with nothing relevant)."""
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    total = rel.sum(axis=1)
    summed = (hits / ranks * rel).sum(axis=1)
    return np.divide(summed, total, out=np.zeros(len(rel)), where=total > 0)


@dataclass(frozen=True)
class Scores:
    """Means over a set of queries."""

    weighted_p15: float
    precision_at_k: float
    recall_at_k: float
    map: float
    nn_accuracy: float
    queries: int


@dataclass(frozen=True)
class Evaluation:
    """Per-query values (in query order), their means, and the means per query class."""

    k: int
    labels: list[str]
    weighted_p15: npt.NDArray[np.float64]
    precision_at_k: npt.NDArray[np.float64]
    recall_at_k: npt.NDArray[np.float64]
    average_precision: npt.NDArray[np.float64]
    nn_correct: npt.NDArray[np.bool_]
    overall: Scores = field(init=False)
    per_class: dict[str, Scores] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "overall", self._means(np.ones(len(self.labels), bool)))
        labels = np.asarray(self.labels)
        object.__setattr__(self, "per_class", {
            str(c): self._means(labels == c) for c in sorted(set(self.labels))
        })

    def _means(self, mask: npt.NDArray[np.bool_]) -> Scores:
        return Scores(
            float(self.weighted_p15[mask].mean()), float(self.precision_at_k[mask].mean()),
            float(self.recall_at_k[mask].mean()), float(self.average_precision[mask].mean()),
            float(self.nn_correct[mask].mean()), int(mask.sum()),
        )


def evaluate_relevance(rel: Relevance, labels: Sequence[str], k: int = 10) -> Evaluation:
    """Gives every metric from a relevance matrix (queries x ranked results)."""
    return Evaluation(k, list(labels), weighted_precision_at_15(rel), precision_at(rel, k),
                      recall_at(rel, k), average_precision(rel), rel[:, 0].copy())


def evaluate(vectors: npt.NDArray[np.float32], labels: Sequence[str], metric: Metric,
             k: int = 10) -> Evaluation:
    """Gives every metric for a gallery of vectors with class labels, each image a query."""
    n = len(vectors)
    if n != len(labels) or n < 2:
        raise ValueError("need at least two vectors, one label each")
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    parts = []
    for rows, ranked in _ranked_chunks(vectors, metric):
        rel = codes[ranked] == codes[rows][:, None]
        parts.append((weighted_precision_at_15(rel), precision_at(rel, k), recall_at(rel, k),
                      average_precision(rel), rel[:, 0].copy()))
    joined = [np.concatenate(column) for column in zip(*parts, strict=True)]
    return Evaluation(k, list(labels), *joined)
