"""Pooling a layer's (N, C, H, W) map into one vector per image: avg, max, gem or flat.

Generalized-mean pooling carries its exponent in its name, so vectors pooled with different
exponents are different feature sets: `gem` is p=3, `gem4` is p=4, `gem2.5` is p=2.5."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from semsearch.errors import FeatureSetError
from semsearch.featureset import GEM_EPS, check_pooling, gem_exponent


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


def pool(maps: npt.NDArray[np.float32], method: str) -> npt.NDArray[np.float32]:
    """Gives (N, D) float32 vectors pooled from (N, C, H, W) maps; (N, C) passes through."""
    gem_p = gem_exponent(method)
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
    elif gem_p is not None:
        # Generalized mean (Radenovic et al.): between avg (p=1) and max (p -> inf).
        # Negative activations (layers before a ReLU) are clamped, as GeM assumes >= 0.
        # Scaling by the per-channel max first keeps x**p finite for any layer and p.
        # One image at a time, in float32: a batch of early-layer maps is large.
        out = np.empty(x.shape[:2], dtype=np.float32)
        for i in range(n):
            clamped = np.maximum(x[i], np.float32(GEM_EPS))
            top = clamped.max(axis=(1, 2), keepdims=True)
            mean = np.power(clamped / top, np.float32(gem_p)).mean(axis=(1, 2), dtype=np.float64)
            out[i] = np.power(mean, 1.0 / gem_p) * top[:, 0, 0]
    else:
        out = x.reshape(n, -1)
    return np.ascontiguousarray(out, dtype=np.float32)
