"""Comparing two rankings of the same items computed two ways (an index and numpy, a batch
and single images) the way retrieval is judged: the same scores rank by rank, and the same
items wherever the scores leave no doubt. Another CPU's float kernels (AVX2 against
AVX-512, another BLAS) move scores by a few ulps, so items whose scores tie within that
may come back in either order, or either of them at the cut-off."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

# Far above the float32 rounding that differs between kernels (about 1e-7 on the cosine of
# unit vectors), far below any real gap between the scores of different images.
TOLERANCE = 1e-5


def assert_same_ranking(got_ids: Sequence[Hashable], got_scores: Sequence[float],
                        want_ids: Sequence[Hashable], want_scores: Sequence[float], *,
                        tol: float = TOLERANCE) -> None:
    """Raises AssertionError unless the rankings agree: as many items, no item twice, the
    scores (similarities or distances, whichever the ranking is sorted by) equal within tol
    rank by rank, and the same set of ids above every clear gap in `want_scores` (one wider
    than 2 * tol, which rounding in either computation cannot cross). Items tied within the
    tolerance may swap places, and at the end of the list the tied ones may differ."""
    got, want = _plain(got_ids), _plain(want_ids)
    got_s = np.asarray(got_scores, dtype=np.float64)
    want_s = np.asarray(want_scores, dtype=np.float64)
    assert len(got) == len(got_s) and len(want) == len(want_s), "one id per score"
    assert len(got) == len(want), f"{len(got)} items, expected {len(want)}: {got} vs {want}"
    assert len(set(got)) == len(got), f"an item ranked twice: {got}"
    off = np.flatnonzero(np.abs(got_s - want_s) > tol)
    assert not off.size, (f"scores differ at rank {int(off[0]) + 1}: {got_s.tolist()} vs "
                          f"{want_s.tolist()} (ids {got} vs {want})")
    for cut in np.flatnonzero(np.abs(np.diff(want_s)) > 2 * tol) + 1:
        assert set(got[:cut]) == set(want[:cut]), (
            f"different items in the first {cut}, above a clear gap in the scores: "
            f"{got} vs {want} (scores {want_s.tolist()})")


def _plain(ids: Sequence[Hashable]) -> list[Hashable]:
    """Gives the ids as Python values (numpy integers print as themselves in messages)."""
    return [i.item() if isinstance(i, np.generic) else i for i in ids]
