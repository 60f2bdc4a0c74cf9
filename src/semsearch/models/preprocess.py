"""Resize-and-crop preprocessing: short side to size/crop_fraction (bicubic), centre crop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network's uint8 HxWx3 input. `name` keys feature sets,
    so changing any field gives new vectors instead of mixing old and new ones."""

    size: int
    crop_fraction: float = 0.875

    @property
    def name(self) -> str:
        return f"short{self.resize_short}-center{self.size}-bicubic"

    @property
    def resize_short(self) -> int:
        return int(round(self.size / self.crop_fraction))

    def __call__(self, im: Image.Image) -> npt.NDArray[np.uint8]:
        width, height = im.size
        scale = self.resize_short / min(width, height)
        new_w = max(self.size, int(round(width * scale)))
        new_h = max(self.size, int(round(height * scale)))
        # reducing_gap lets PIL box-reduce large images first; the result is within JPEG
        # noise of a plain bicubic resize and several times faster.
        resized = im.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left = (new_w - self.size) // 2
        top = (new_h - self.size) // 2
        cropped = resized.crop((left, top, left + self.size, top + self.size))
        return np.asarray(cropped, dtype=np.uint8)
