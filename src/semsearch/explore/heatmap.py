"""Heatmaps drawn over images: a 2-D map of how much each region matters, upsampled to the
image, coloured and blended in."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image


def overlay(pixels: npt.NDArray[np.uint8], heat: npt.NDArray[np.floating],
            alpha: float = 0.55) -> bytes:
    """Gives a PNG of the image (H x W x 3) with the map (h x w) drawn over it: larger values
    hotter, scaled to the map's own range (a flat map draws nothing)."""
    from matplotlib import colormaps

    h, w = pixels.shape[:2]
    values = np.asarray(heat, dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    resized = np.asarray(Image.fromarray((scaled * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    colours = colormaps["inferno"](resized)[..., :3]
    weight = alpha * resized[..., None] ** 0.5  # cold regions stay visible
    blended = pixels.astype(np.float64) / 255.0 * (1 - weight) + colours * weight
    buffer = io.BytesIO()
    Image.fromarray((blended * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
