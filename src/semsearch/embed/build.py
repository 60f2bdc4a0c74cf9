"""The one way an extractor is built from a feature set: one model's, a composite's, and an
adapter's projection on top. A session and every Ray worker build theirs here, so the two
can never embed differently."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from semsearch.config import Config
from semsearch.embed.extractors import (
    AdaptedExtractor,
    CompositeExtractor,
    Extractor,
    FeatureExtractor,
)
from semsearch.errors import FeatureSetError
from semsearch.featureset import FeatureSet
from semsearch.models.backbone import load_backbone
from semsearch.models.registry import ModelSpec
from semsearch.models.runtime import Backbone


class AdapterWeights(Protocol):
    """A learned projection of a base feature set (what the store keeps for an adapter)."""

    @property
    def base(self) -> FeatureSet: ...

    @property
    def weights(self) -> npt.NDArray[np.float32]: ...

    @property
    def digest(self) -> str: ...


@dataclass(frozen=True)
class ExtractorSettings:
    """The settings an extractor is built with; picklable, so a Ray worker gets them."""

    runtime: str
    cache_dir: Path
    threads: int
    flat_max_dims: int
    max_pixels: int

    @classmethod
    def of(cls, config: Config) -> ExtractorSettings:
        """Gives the extractor settings of a Config."""
        return cls(config.runtime, config.cache_path(), config.threads, config.flat_max_dims,
                   config.max_pixels)


BackboneLoader = Callable[[ModelSpec, Sequence[str]], Backbone]


def load(spec: ModelSpec, layers: Sequence[str], settings: ExtractorSettings) -> Backbone:
    """Gives a backbone of the spec yielding the layers in one pass, on the configured
    runtime (the one place the settings meet models.backbone.load_backbone)."""
    return load_backbone(spec, list(layers), runtime=settings.runtime,
                         cache_dir=settings.cache_dir, threads=settings.threads)


def build_extractor(fs: FeatureSet, specs: Sequence[ModelSpec], settings: ExtractorSettings,
                    adapter: AdapterWeights | None = None, *,
                    backbone: BackboneLoader | None = None,
                    base: Extractor | None = None) -> Extractor:
    """Gives the extractor of a feature set: `specs` are its models' specs in order; an
    adapted feature set needs its adapter. `base`, when given, is the already built
    extractor of fs.base (a cache's), reused under the projection."""
    if fs.adapter:
        if adapter is None:
            raise FeatureSetError(f"{fs} needs adapter {fs.adapter}'s weights")
        if adapter.base != fs.base:
            raise FeatureSetError(f"adapter {fs.adapter} projects {adapter.base}, not {fs.base}")
        inner = base or build_extractor(fs.base, specs, settings, backbone=backbone)
        return AdaptedExtractor(fs, inner, adapter.weights, adapter.digest)
    parts_fs = fs.parts
    if len(specs) != len(parts_fs):
        raise FeatureSetError(f"{fs} joins {len(parts_fs)} models; {len(specs)} specs given")

    loader = backbone or (lambda spec, layers: load(spec, layers, settings))
    parts = [FeatureExtractor(spec, part, loader(spec, [part.layer]),
                              flat_max_dims=settings.flat_max_dims,
                              max_pixels=settings.max_pixels)
             for spec, part in zip(specs, parts_fs, strict=True)]
    extractor: Extractor = parts[0] if len(parts) == 1 else CompositeExtractor(fs, parts)
    if extractor.dim > settings.flat_max_dims:
        raise FeatureSetError(
            f"{fs} gives {extractor.dim:,} dimensions, above the cap of "
            f"{settings.flat_max_dims:,} (setting flat_max_dims)")
    return extractor
