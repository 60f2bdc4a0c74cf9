"""Exact search against a plain numpy brute force, for every metric and both query paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from semsearch.errors import UnknownMetricError
from semsearch.index.exact import ExactIndex, calibration
from semsearch.index.metric import METRICS, Metric

SCIPY = {"cosine": "cosine", "euclidean": "euclidean", "sqeuclidean": "sqeuclidean",
         "minkowski": "minkowski"}


def _data(n: int = 600, d: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centers = rng.uniform(0, 6, (8, d))
    x = np.clip(centers[rng.integers(0, 8, n)] + rng.normal(0, 0.8, (n, d)), 0, 6)
    return x.astype(np.float32), np.arange(1000, 1000 + n, dtype=np.int64)


def _expected(x: np.ndarray, q: np.ndarray, metric: Metric) -> np.ndarray:
    if metric.name == "ip":
        return -(q.astype(np.float64) @ x.astype(np.float64).T)
    kw = {"p": metric.p} if metric.name == "minkowski" else {}
    return cdist(q.astype(np.float64), x.astype(np.float64), SCIPY[metric.name], **kw)


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("n_queries", [1, 3, 12])  # 1 and 3 take the BLAS path, 12 FAISS
def test_search_matches_brute_force(name: str, n_queries: int) -> None:
    x, ids = _data()
    metric = Metric(name, p=3.0)
    index = ExactIndex.build(x, ids, metric)
    q = x[:n_queries] * 0.9 + 0.1
    dist, found = index.search(q, 10)
    expected = _expected(x, q, metric)
    for row in range(n_queries):
        order = np.argsort(expected[row], kind="stable")[:10]
        np.testing.assert_allclose(dist[row], expected[row][order], rtol=2e-3, atol=2e-3)
        # Ties aside, the same images come back in the same order.
        np.testing.assert_allclose(expected[row][found[row] - 1000], expected[row][order],
                                   rtol=2e-3, atol=2e-3)
        assert np.all(np.diff(dist[row]) >= -1e-4)


def test_fewer_vectors_than_k_gives_shorter_rows() -> None:
    x, ids = _data(n=3)
    dist, found = ExactIndex.build(x, ids, Metric()).search(x[:1], 10**15)
    assert found.shape == dist.shape == (1, 3) and sorted(found[0]) == [1000, 1001, 1002]
    empty = ExactIndex.build(np.zeros((0, 24), np.float32), np.zeros(0, np.int64), Metric())
    assert empty.search(x[:1], 4)[1].shape == (1, 0)


@pytest.mark.parametrize("name", METRICS)
def test_save_and_load_round_trip(tmp_path: Path, name: str) -> None:
    x, ids = _data()
    index = ExactIndex.build(x, ids, Metric(name))
    index.save(tmp_path / "ix.faiss")
    loaded = ExactIndex.load(tmp_path / "ix.faiss", Metric(name))
    a, b = index.search(x[:2], 5), loaded.search(x[:2], 5)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0])


@pytest.mark.parametrize("name", METRICS)
def test_scores_are_in_unit_range_and_fall_with_distance(name: str) -> None:
    x, ids = _data()
    index = ExactIndex.build(x, ids, Metric(name))
    calib = calibration(index, x)
    dist, _ = index.search(x[:5], 50)
    s = calib.scores(dist)
    assert ((s >= 0) & (s <= 1)).all()
    assert (np.diff(s, axis=1) <= 1e-12).all()
    # The image itself scores 1; a typical pair one half; the closest 5 % of pairs 0.95.
    if name != "ip":
        np.testing.assert_allclose(s[:, 0], 1.0, atol=1e-3)
    np.testing.assert_allclose(calib.scores(np.array([calib.center, calib.low])), [0.5, 0.95])


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownMetricError, match="cosine, euclidean"):
        Metric("manhattan")
    with pytest.raises(UnknownMetricError, match="p >= 1"):
        Metric("minkowski", p=0.5)
