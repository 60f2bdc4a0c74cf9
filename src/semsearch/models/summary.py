"""What a person wants to know about the available models: size, layer count, input, and
each model's table of layers."""

from __future__ import annotations

from dataclasses import dataclass

from semsearch.models.layers import LayerInfo
from semsearch.models.onnx_file import OnnxInput, is_onnx_name, onnx_layer_table, onnx_spec
from semsearch.models.registry import ModelRegistry


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    layers: int
    input_size: int
    default_layer: str
    description: str


def summarize(registry: ModelRegistry) -> list[ModelSummary]:
    """Gives every registered model, smallest (by parameter count) first."""
    from semsearch.models.network import layer_table  # building the networks needs torch

    rows = []
    for spec in registry.specs():
        net = spec.build()
        table = layer_table(net, spec.preprocess.size, spec.classifier)
        rows.append(ModelSummary(spec.name, sum(p.numel() for p in net.parameters()),
                                 len(table), spec.preprocess.size, spec.default_layer,
                                 spec.description))
    return sorted(rows, key=lambda row: row.params)


def layers(registry: ModelRegistry, name: str,
           onnx_input: OnnxInput | None = None) -> list[LayerInfo]:
    """Gives a model's addressable layers in execution order (for `onnx:PATH`, its
    tensors)."""
    if is_onnx_name(name):
        return onnx_layer_table(onnx_spec(name, onnx_input or OnnxInput()))
    from semsearch.models.network import layer_table  # a registered model's table needs torch

    spec = registry.get(name)
    return layer_table(spec.build(), spec.preprocess.size, spec.classifier)

