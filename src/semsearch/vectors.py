"""Label-free ways to make a gallery's vectors retrieve better, learned from the gallery
itself: multi-model concatenation, database-side augmentation (DBA) with matching query
expansion, and PCA-whitening. All work on L2-normalized vectors compared by cosine.

DBA replaces each gallery vector by a weighted mean of itself and its nearest neighbours; a
query from outside the gallery is expanded the same way over its nearest gallery vectors.
Weights are the cosine similarity to the power alpha (Radenovic, Tolias and Chum,
"Fine-tuning CNN image retrieval with no human annotation", 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


def l2_normalize(x: npt.NDArray[np.floating]) -> Vectors:
    """Gives the rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def project(vectors: Vectors, weights: Vectors) -> Vectors:
    """Gives vectors through a learned projection (an adapter): normalize, project,
    normalize."""
    return l2_normalize(l2_normalize(vectors) @ weights)


def concatenate(parts: Sequence[Vectors]) -> Vectors:
    """Gives the normalized concatenation of each part's normalized rows, so every model
    weighs the same whatever its dimension or scale."""
    if not parts or len({len(p) for p in parts}) != 1:
        raise ValueError("need one or more parts with the same number of rows")
    return l2_normalize(np.concatenate([l2_normalize(p) for p in parts], axis=1))


def _weighted_neighbour_sum(queries: Vectors, gallery: Vectors, k: int,
                            alpha: float) -> npt.NDArray[np.float32]:
    """Gives, per query, the sum of its k nearest gallery vectors weighted by their
    (non-negative) cosine similarity to the power alpha. Queries go in chunks and neighbours
    are added one rank at a time, so memory stays at chunk x (gallery + dim)."""
    k = min(k, gallery.shape[0])
    out = np.zeros((len(queries), gallery.shape[1]), dtype=np.float32)
    for lo in range(0, len(queries), 1024):
        sims = queries[lo:lo + 1024] @ gallery.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.power(np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None), alpha)
        for rank in range(k):
            out[lo:lo + 1024] += weights[:, rank, None] * gallery[top[:, rank]]
    return out


def database_augmentation(gallery: Vectors, k: int = 10, alpha: float = 3.0) -> Vectors:
    """Gives the DBA gallery: each vector becomes the similarity-weighted mean of its k
    nearest gallery vectors, itself included (its own weight is 1)."""
    g = l2_normalize(gallery)
    return l2_normalize(_weighted_neighbour_sum(g, g, k, alpha))


def augment_query(query: Vectors, gallery: Vectors, k: int = 10,
                  alpha: float = 3.0, *, gallery_normalized: bool = False) -> Vectors:
    """Gives queries from outside a DBA gallery as they would be inside it: each query plus
    its k - 1 nearest gallery vectors (the query itself being the k-th), weighted by
    similarity to the power alpha, normalized. This is alpha query expansion matched to
    DBA, so a query and its gallery copy are compared alike. gallery_normalized skips
    normalizing a gallery whose rows are unit length already (a search's hot path)."""
    q = l2_normalize(query)
    if k < 2 or len(gallery) == 0:
        return q
    g = gallery if gallery_normalized else l2_normalize(gallery)
    return l2_normalize(q + _weighted_neighbour_sum(q, g, k - 1, alpha))


@dataclass(frozen=True)
class PCAWhitening:
    """PCA-whitening learned on a gallery: centre, project on the top `dims` components,
    divide each by (variance + shrink * mean variance) ** power, normalize."""

    mean: Vectors
    projection: Vectors

    @classmethod
    def fit(cls, gallery: Vectors, dims: int | None = None, power: float = 0.5,
            shrink: float = 0.0) -> PCAWhitening:
        x = l2_normalize(gallery).astype(np.float64)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        keep = min(dims or len(s), int((s > 1e-9 * s[0]).sum()))
        variance = s[:keep] ** 2 / len(x)
        scale = (variance + shrink * variance.mean()) ** power
        projection = (vt[:keep].T / scale).astype(np.float32)
        return cls(mean.astype(np.float32), projection)

    def apply(self, vectors: Vectors) -> Vectors:
        return l2_normalize((l2_normalize(vectors) - self.mean) @ self.projection)
