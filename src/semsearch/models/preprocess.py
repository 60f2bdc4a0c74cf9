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
        # Resizing the short side to resize_short and cropping the centre size x size is the
        # same as resampling, from the original, the centred square whose side is
        # crop_fraction of the short side. Doing it in one step never builds the resized
        # whole image, which for a 60000x1 panorama would be gigapixels.
        width, height = im.size
        side = min(width, height) * self.crop_fraction
        left, top = (width - side) / 2, (height - side) / 2
        # reducing_gap lets PIL box-reduce large images first; the result is within JPEG
        # noise of a plain bicubic resize and several times faster.
        out = im.resize((self.size, self.size), Image.Resampling.BICUBIC,
                        box=(left, top, left + side, top + side), reducing_gap=3.0)
        return np.asarray(out, dtype=np.uint8)
