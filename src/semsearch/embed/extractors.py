"""Turning images into one feature set's vectors: decode, preprocess, backbone, pool. The
same path serves the gallery and queries, so a query is embedded exactly as the gallery was.

A composite feature set (`lite0+lite1+lite2@_head_act/gem`) runs several models on one
decode of each image and concatenates their vectors, each normalized, so every model weighs
the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from semsearch.embed.pooling import pool, pooled_dim
from semsearch.featureset import FeatureSet, join_models
from semsearch.images import OpenedImage, open_image
from semsearch.models.registry import ModelSpec, input_key
from semsearch.models.runtime import Backbone
from semsearch.vectors import concatenate, project


class Embedder(Protocol):
    """What indexing needs: one decode per image, then vectors for one or more feature sets
    (`outputs`: each feature set and its dimension)."""

    @property
    def preprocessing(self) -> str: ...

    @property
    def outputs(self) -> tuple[tuple[FeatureSet, int], ...]: ...

    @property
    def max_pixels(self) -> int: ...

    def decode(self, source: str | bytes, name: str | None = None
               ) -> tuple[Any, tuple[int, int]]: ...

    def embed_sets(self, inputs: Sequence[Any]) -> list[npt.NDArray[np.float32]]: ...


class Extractor(Embedder, Protocol):
    """What search needs besides: one feature set's vectors, single-model or composite."""

    feature_set: FeatureSet
    dim: int

    def embed_many(self, inputs: Sequence[Any]) -> npt.NDArray[np.float32]: ...

    def embed_image(self, source: str | bytes,
                    name: str | None = None) -> npt.NDArray[np.float32]: ...


def decode_input(spec: ModelSpec, max_pixels: int, source: str | bytes, name: str | None = None
            ) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
    """Gives the model's input for an image (its preprocessed centre crop) and the image's
    upright (width, height)."""
    prep = spec.preprocess
    opened = open_image(source, max_pixels=max_pixels, min_short_side=prep.resize_short,
                        name=name)
    return prep(opened.image), (opened.width, opened.height)


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
        return input_key(self.spec)

    @property
    def outputs(self) -> tuple[tuple[FeatureSet, int], ...]:
        return ((self.feature_set, self.dim),)

    def decode(
        self, source: str | bytes, name: str | None = None
    ) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
        """Gives the network input for an image and the image's upright (width, height)."""
        return decode_input(self.spec, self.max_pixels, source, name)

    def embed_sets(self, inputs: Sequence[npt.NDArray[np.uint8]]
                   ) -> list[npt.NDArray[np.float32]]:
        return [self.embed_many(inputs)]

    def embed(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Gives (N, dim) vectors for a (N, H, W, 3) uint8 batch."""
        maps = self.backbone.run(pixels)[self.feature_set.layer]
        return pool(maps, self.feature_set.pooling)

    def embed_many(self, inputs: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Gives (N, dim) vectors for N decoded images."""
        return self.embed(np.stack(list(inputs)))

    def embed_image(self, source: str | bytes, name: str | None = None) -> npt.NDArray[np.float32]:
        """Gives the vector of one image file or encoded image bytes."""
        pixels, _ = self.decode(source, name)
        return self.embed(pixels[None])[0]


class CompositeExtractor:
    """Several single-model extractors on one decode of each image; the vector is the
    normalized concatenation of theirs."""

    def __init__(self, feature_set: FeatureSet, parts: Sequence[FeatureExtractor]) -> None:
        self.feature_set = feature_set
        self.parts = list(parts)
        self.dim = sum(part.dim for part in self.parts)
        self.max_pixels = min(part.max_pixels for part in self.parts)
        self._short_side = max(part.spec.preprocess.resize_short for part in self.parts)

    @property
    def preprocessing(self) -> str:
        return join_models([part.preprocessing for part in self.parts])

    @property
    def outputs(self) -> tuple[tuple[FeatureSet, int], ...]:
        return ((self.feature_set, self.dim),)

    def embed_sets(self, inputs: Sequence[tuple[npt.NDArray[np.uint8], ...]]
                   ) -> list[npt.NDArray[np.float32]]:
        return [self.embed_many(inputs)]

    def decode(self, source: str | bytes, name: str | None = None
               ) -> tuple[tuple[npt.NDArray[np.uint8], ...], tuple[int, int]]:
        """Gives each part's network input from one decode, and the image's full size."""
        opened: OpenedImage = open_image(source, max_pixels=self.max_pixels,
                                         min_short_side=self._short_side, name=name)
        inputs = tuple(part.spec.preprocess(opened.image) for part in self.parts)
        return inputs, (opened.width, opened.height)

    def embed_many(self, inputs: Sequence[tuple[npt.NDArray[np.uint8], ...]]
                   ) -> npt.NDArray[np.float32]:
        vectors = [part.embed(np.stack([item[i] for item in inputs]))
                   for i, part in enumerate(self.parts)]
        return concatenate(vectors)

    def embed_image(self, source: str | bytes, name: str | None = None) -> npt.NDArray[np.float32]:
        inputs, _ = self.decode(source, name)
        return self.embed_many([inputs])[0]


class LayerSweep:
    """Many feature sets of one model from one forward pass: every requested layer, each
    pooled every requested way. `semsearch compare` indexes with it."""

    def __init__(self, spec: ModelSpec, feature_sets: Sequence[FeatureSet], backbone: Backbone,
                 *, flat_max_dims: int = 200_000, max_pixels: int = 120_000_000) -> None:
        self.spec = spec
        self.backbone = backbone
        self.max_pixels = max_pixels
        self.feature_sets = list(dict.fromkeys(feature_sets))
        self._outputs = tuple(
            (fs, pooled_dim(backbone.output_shape(fs.layer), fs.pooling, flat_max_dims))
            for fs in self.feature_sets)

    @property
    def preprocessing(self) -> str:
        return input_key(self.spec)

    @property
    def outputs(self) -> tuple[tuple[FeatureSet, int], ...]:
        return self._outputs

    def decode(self, source: str | bytes, name: str | None = None
               ) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
        return decode_input(self.spec, self.max_pixels, source, name)

    def embed_sets(self, inputs: Sequence[npt.NDArray[np.uint8]]
                   ) -> list[npt.NDArray[np.float32]]:
        maps = self.backbone.run(np.stack(list(inputs)))
        return [pool(maps[fs.layer], fs.pooling) for fs in self.feature_sets]


class AdaptedExtractor:
    """A base extractor's vectors through an adapter's learned projection."""

    def __init__(self, feature_set: FeatureSet, base: Extractor,
                 weights: npt.NDArray[np.float32], digest: str) -> None:
        self.feature_set = feature_set
        self.base = base
        self.weights = weights
        self.dim = int(weights.shape[1])
        self._digest = digest

    @property
    def preprocessing(self) -> str:
        return adapted_input_key(self.base.preprocessing, self._digest)

    @property
    def outputs(self) -> tuple[tuple[FeatureSet, int], ...]:
        return ((self.feature_set, self.dim),)

    @property
    def max_pixels(self) -> int:
        return self.base.max_pixels

    def decode(self, source: str | bytes, name: str | None = None
               ) -> tuple[Any, tuple[int, int]]:
        return self.base.decode(source, name)

    def embed_many(self, inputs: Sequence[Any]) -> npt.NDArray[np.float32]:
        return project(self.base.embed_many(inputs), self.weights)

    def embed_sets(self, inputs: Sequence[Any]) -> list[npt.NDArray[np.float32]]:
        return [self.embed_many(inputs)]

    def embed_image(self, source: str | bytes, name: str | None = None) -> npt.NDArray[np.float32]:
        return project(self.base.embed_image(source, name)[None, :], self.weights)[0]


def adapted_input_key(base: str, digest: str) -> str:
    """Gives the input key of an adapted feature set: its base's, and which weights, so
    vectors and indexes of a retrained adapter never mix with the old one's."""
    return f"{base}|adapter:{digest}"
