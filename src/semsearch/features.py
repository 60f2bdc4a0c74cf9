"""Turning images into one feature set's vectors: decode, preprocess, backbone, pool. The
same path serves the gallery and queries, so a query is embedded exactly as the gallery was."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from semsearch.featureset import FeatureSet
from semsearch.images import open_image
from semsearch.models.registry import ModelSpec
from semsearch.models.runtime import Backbone
from semsearch.pooling import pool, pooled_dim


class FeatureExtractor:
    """Turns images into one feature set's vectors, the same way for the gallery and for
    queries: decode, preprocess, backbone, pool."""

    def __init__(
        self,
        spec: ModelSpec,
        feature_set: FeatureSet,
        backbone: Backbone,
        *,
        flat_max_dims: int = 200_000,
        max_pixels: int = 120_000_000,
    ) -> None:
        self.spec = spec
        self.feature_set = feature_set
        self.backbone = backbone
        self.max_pixels = max_pixels
        shape = backbone.output_shape(feature_set.layer)
        self.dim = pooled_dim(shape, feature_set.pooling, flat_max_dims)

    @property
    def preprocessing(self) -> str:
        return self.spec.preprocess.name

    def decode(
        self, source: str | bytes, name: str | None = None
    ) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
        """Gives the network input for an image and the image's upright (width, height)."""
        prep = self.spec.preprocess
        opened = open_image(source, max_pixels=self.max_pixels,
                            min_short_side=prep.resize_short, name=name)
        return prep(opened.image), (opened.width, opened.height)

    def embed(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Gives (N, dim) vectors for a (N, H, W, 3) uint8 batch."""
        maps = self.backbone.run(pixels)[self.feature_set.layer]
        return pool(maps, self.feature_set.pooling)

    def embed_image(self, source: str | bytes, name: str | None = None) -> npt.NDArray[np.float32]:
        """Gives the vector of one image file or encoded image bytes."""
        pixels, _ = self.decode(source, name)
        return self.embed(pixels[None])[0]
