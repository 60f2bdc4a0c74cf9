"""Label-free expansion: DBA, alpha-QE, concatenation and PCA-whitening."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.index.metric import Metric
from semsearch.ranking import evaluate
from semsearch.vectors import (
    PCAWhitening,
    augment_query,
    concatenate,
    database_augmentation,
    l2_normalize,
)


def _clusters(seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (6, 32))
    labels = [f"c{i % 6}" for i in range(120)]
    x = centers[[i % 6 for i in range(120)]] + rng.normal(0, noise, (120, 32))
    return x.astype(np.float32), labels


def test_dba_by_hand() -> None:
    g = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    out = database_augmentation(g, k=2, alpha=1.0)
    n = l2_normalize(g)
    expected_first = l2_normalize((n[0] + np.dot(n[0], n[1]) * n[1])[None])[0]
    np.testing.assert_allclose(out[0], expected_first, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_augment_query_by_hand() -> None:
    g = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    q = np.array([[0.8, 0.6]], np.float32)
    out = augment_query(q, g, k=3, alpha=2.0)
    # k - 1 = 2 nearest: [1, 0] (cos 0.8) and [0.6, 0.8] (cos 0.96).
    expected = q[0] + 0.8**2 * g[0] + 0.96**2 * g[1]
    np.testing.assert_allclose(out[0], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(augment_query(q, g[:0], k=3), q, rtol=1e-6)


def test_outside_query_is_augmented_as_it_would_be_inside() -> None:
    x, _ = _clusters(seed=5)
    dba = database_augmentation(x, k=6)
    for i in (0, 17, 99):
        others = np.delete(x, i, axis=0)
        np.testing.assert_allclose(augment_query(x[i:i + 1], others, k=6)[0], dba[i],
                                   rtol=1e-4, atol=1e-6)


def test_dba_helps_noisy_clusters() -> None:
    x, labels = _clusters(noise=1.6)
    before = evaluate(l2_normalize(x), labels, Metric("cosine")).overall
    after = evaluate(database_augmentation(x, k=10), labels, Metric("cosine")).overall
    assert after.map > before.map + 0.05 and after.weighted_p15 > before.weighted_p15


def test_concatenation_weighs_parts_equally() -> None:
    a = np.array([[100.0, 0.0]], np.float32)
    b = np.array([[0.0, 0.001, 0.0]], np.float32)
    out = concatenate([a, b])
    np.testing.assert_allclose(out, [[2 ** -0.5, 0, 0, 2 ** -0.5, 0]], rtol=1e-6)
    with pytest.raises(ValueError):
        concatenate([a, np.zeros((2, 3), np.float32)])


def test_whitening_decorrelates_the_gallery() -> None:
    x, _ = _clusters(seed=3)
    w = PCAWhitening.fit(x, dims=16)
    out = w.apply(x)
    assert out.shape == (120, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    raw = (l2_normalize(x) - w.mean) @ w.projection
    cov = np.cov(raw.T)
    np.testing.assert_allclose(np.diag(cov), 1.0, rtol=0.05)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.05
