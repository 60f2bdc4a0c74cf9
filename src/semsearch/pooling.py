"""Pooling a layer's (N, C, H, W) map into one vector per image: avg, max, gem or flat."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from semsearch.errors import FeatureSetError

POOLINGS = ("avg", "max", "gem", "flat")
_GEM_EPS = 1e-6


def check_pooling(method: str) -> str:
    """Gives the pooling name back, or raises FeatureSetError listing the valid ones."""
    if method not in POOLINGS:
        raise FeatureSetError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")
    return method


def pooled_dim(shape: tuple[int, ...], method: str, flat_max_dims: int) -> int:
    """Gives the vector length that pooling a layer of this per-image shape produces, or
    raises FeatureSetError when `flat` would exceed flat_max_dims."""
    check_pooling(method)
    if len(shape) == 1:
        return shape[0]
    if method != "flat":
        return shape[0]
    dims = math.prod(shape)
    if dims > flat_max_dims:
        raise FeatureSetError(
            f"flat pooling of a {'x'.join(map(str, shape))} layer gives {dims:,} dimensions, "
            f"above the cap of {flat_max_dims:,} (setting flat_max_dims); use avg, max or gem, "
            "or a later, smaller layer"
        )
    return dims


def pool(
    maps: npt.NDArray[np.float32], method: str, *, gem_p: float = 3.0
) -> npt.NDArray[np.float32]:
    """Gives (N, D) float32 vectors pooled from (N, C, H, W) maps; (N, C) passes through."""
    check_pooling(method)
    x = np.asarray(maps, dtype=np.float32)
    if x.ndim == 2:
        return np.ascontiguousarray(x)
    if x.ndim != 4:
        raise FeatureSetError(f"cannot pool an array of shape {x.shape}")
    n = x.shape[0]
    if method == "avg":
        out = x.mean(axis=(2, 3))
    elif method == "max":
        out = x.max(axis=(2, 3))
    elif method == "gem":
        # Generalized mean (Radenovic et al.): between avg (p=1) and max (p -> inf).
        # Negative activations (layers before a ReLU) are clamped, as GeM assumes >= 0.
        clamped = np.maximum(x, _GEM_EPS)
        out = np.power(np.power(clamped, gem_p).mean(axis=(2, 3)), 1.0 / gem_p)
    else:
        out = x.reshape(n, -1)
    return np.ascontiguousarray(out, dtype=np.float32)
