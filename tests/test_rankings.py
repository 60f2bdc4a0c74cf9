"""The ranking comparison the tests use: it lets tied items swap and catches a real
mis-ranking."""

from __future__ import annotations

import numpy as np
import pytest
from tests.rankings import assert_same_ranking

IDS = [10, 11, 12, 13]
SCORES = [0.9, 0.8, 0.8 + 1e-7, 0.5]  # 11 and 12 tie within float32 rounding


def test_accepts_the_same_ranking_and_a_tie_swap() -> None:
    assert_same_ranking(IDS, SCORES, IDS, SCORES)
    assert_same_ranking([10, 12, 11, 13], [0.9, 0.8 + 1e-7, 0.8, 0.5], IDS, SCORES)
    # Another item tied with the last one at the cut-off may take its place.
    assert_same_ranking([10, 11, 12, 99], [0.9, 0.8, 0.8, 0.5 + 1e-7], IDS, SCORES)
    # Distances, smaller first, tie the same way.
    assert_same_ranking([3, 1, 2], [0.1, 0.2 + 1e-7, 0.2], [3, 2, 1], [0.1, 0.2, 0.2])


@pytest.mark.parametrize("got_ids, got_scores, why", [
    ([11, 10, 12, 13], SCORES, "different items in the first 1"),  # swapped across a gap
    ([10, 12, 99, 13], SCORES, "different items in the first 3"),  # a tie group's stranger
    ([10, 11, 12, 13], [0.9, 0.8, 0.79, 0.5], "scores differ at rank 3"),
    ([10, 11, 12], SCORES[:3], "3 items, expected 4"),
    ([10, 11, 11, 13], SCORES, "an item ranked twice"),
])
def test_rejects_a_mis_ranking(got_ids: list[int], got_scores: list[float], why: str) -> None:
    with pytest.raises(AssertionError, match=why):
        assert_same_ranking(got_ids, got_scores, IDS, SCORES)


def test_rejects_neighbours_swapped_in_a_real_ranking() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x[0]
    order = np.argsort(-sims)[:10]
    assert_same_ranking(order, sims[order], order, sims[order])
    gaps = -np.diff(sims[order])
    i = int(np.argmax(gaps > 1e-4))  # two neighbours a clear gap apart
    assert gaps[i] > 1e-4
    swapped = order.copy()
    swapped[[i, i + 1]] = swapped[[i + 1, i]]
    # Reported with their own scores (out of order), or with the sorted ones (wrong items).
    with pytest.raises(AssertionError, match="scores differ at rank"):
        assert_same_ranking(swapped, sims[swapped], order, sims[order])
    with pytest.raises(AssertionError, match="different items"):
        assert_same_ranking(swapped, sims[order], order, sims[order])
