"""The one way to get a backbone for a model spec: a user's ONNX file as it is, the torch
reference, or (the default) ONNX Runtime on a graph exported from the torch weights once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semsearch.models.onnx_file import OnnxFileBackbone
from semsearch.models.registry import ModelSpec
from semsearch.models.runtime import Backbone, OnnxBackbone, TorchBackbone


def load_backbone(
    spec: ModelSpec,
    layers: Sequence[str],
    *,
    runtime: str = "onnx",
    cache_dir: Path,
    threads: int = 0,
) -> Backbone:
    """Gives a backbone for the spec that yields the given layers in one forward pass."""
    if spec.onnx_path is not None:
        return OnnxFileBackbone(spec, layers, cache_dir, threads)
    if runtime == "torch":
        return TorchBackbone(spec, layers, threads)
    return OnnxBackbone(spec, layers, cache_dir, threads)
