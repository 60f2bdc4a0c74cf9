"""Retrieval metrics against hand-computed cases, including the datasets README's example."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.index.metric import Metric
from semsearch.ranking import (
    average_precision,
    evaluate,
    evaluate_relevance,
    precision_at,
    rank_neighbours,
    recall_at,
    relevance,
    weighted_precision_at_15,
)


def test_readme_worked_example() -> None:
    # "a query whose top 15 are all of its class except rank 13 scores (120 - 2)/120*100"
    rel = np.ones((1, 20), bool)
    rel[0, 13] = False
    assert weighted_precision_at_15(rel)[0] == pytest.approx(98.3333, abs=1e-3)
    assert weighted_precision_at_15(rel)[0] == pytest.approx((120 - 2) / 120 * 100)


def test_weighted_precision_extremes_and_weights() -> None:
    rel = np.zeros((3, 19), bool)
    rel[0, :15] = True  # perfect
    rel[2, 0] = True  # only the first result: 15 / 120
    rel[2, 15:] = True  # beyond rank 14 counts for nothing
    np.testing.assert_allclose(weighted_precision_at_15(rel), [100.0, 0.0, 12.5])


def test_precision_recall_and_ap_by_hand() -> None:
    # Relevant at ranks 1 and 3 (1-based) of 5; 3 relevant in all.
    rel = np.array([[True, False, True, False, True]])
    assert precision_at(rel, 2)[0] == 0.5
    assert recall_at(rel, 3)[0] == pytest.approx(2 / 3)
    assert average_precision(rel)[0] == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    none = np.zeros((1, 4), bool)
    assert average_precision(none)[0] == 0.0 and recall_at(none, 2)[0] == 0.0


def test_ranking_leaves_each_query_out_even_with_duplicates() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0.9, 0.1]], np.float32)
    ranked = rank_neighbours(vectors, Metric("euclidean"))
    assert ranked.shape == (4, 3)
    assert all(i not in row for i, row in enumerate(ranked.tolist()))
    assert ranked[0, 0] == 1 and ranked[1, 0] == 0 and ranked[2, -1] in (0, 1)


def test_evaluate_gallery_and_per_class() -> None:
    labels = ["a", "a", "a", "b", "b", "b"]
    vectors = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], np.float32)
    result = evaluate(vectors, labels, Metric("euclidean"), k=2)
    assert result.overall.nn_accuracy == 1.0 and result.overall.map == 1.0
    assert result.overall.precision_at_k == 1.0 and result.overall.recall_at_k == 1.0
    assert result.per_class["a"].queries == 3
    # With 5 results, 2 relevant: ranks 0 and 1 -> (15 + 14) / 120.
    assert result.overall.weighted_p15 == pytest.approx(29 / 120 * 100)
    mixed = evaluate_relevance(relevance(np.array([[1, 2], [0, 2], [0, 1]]), ["x", "y", "x"]),
                               ["x", "y", "x"], k=1)
    assert mixed.per_class["y"].nn_accuracy == 0.0 and mixed.per_class["x"].map == 0.75


def test_chunked_evaluation_equals_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch.ranking as evaluate_module

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 6)).astype(np.float32)
    labels = [f"c{i % 4}" for i in range(50)]
    whole = evaluate(vectors, labels, Metric("cosine"), k=5)
    monkeypatch.setattr(evaluate_module, "_CHUNK", 7)
    chunked = evaluate(vectors, labels, Metric("cosine"), k=5)
    assert chunked.overall == whole.overall and chunked.per_class == whole.per_class
    np.testing.assert_array_equal(chunked.average_precision, whole.average_precision)
    assert rank_neighbours(vectors, Metric("cosine")).shape == (50, 49)
