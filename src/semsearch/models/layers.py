"""A network's addressable layers as plain records (name, type, output shape), the lookup
by name, and which layers a sweep or a render covers. Torch-free, so that reading a layer
table or a stored feature set never loads torch (models/network.py works out a torch
module's table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semsearch.errors import EvaluationError, UnknownLayerError

# The softmax of a model's classifier, offered as one more layer (search by words reads it).
PROBS = "probs"


@dataclass(frozen=True)
class LayerInfo:
    """One addressable layer: its module name, type and output shape for one image."""

    name: str
    type: str
    channels: int
    height: int
    width: int
    stride: int
    params: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.height, self.width) if self.height else (self.channels,)


def find_layer(table: Sequence[LayerInfo], name: str, model: str) -> LayerInfo:
    """Gives the named layer or raises UnknownLayerError naming a few valid ones."""
    for layer in table:
        if layer.name == name:
            return layer
    names = [layer.name for layer in table]
    shown = ", ".join(names[-12:])
    raise UnknownLayerError(
        f"model {model} has no layer {name!r}; it has {len(names)} layers, the last ones: "
        f"{shown} (see `semsearch layers {model}`)"
    )


# `--layers auto`: this many convolutional layers spread over the depth.
AUTO = "auto"
AUTO_COUNT = 8


def _is_conv(layer: LayerInfo) -> bool:
    # torch's Conv2d and its subclasses (Conv2dStaticSamePadding), and ONNX's Conv node.
    return layer.type.startswith("Conv") and "Transpose" not in layer.type


def auto_layers(table: Sequence[LayerInfo], count: int = AUTO_COUNT,
                feature_layer: str | None = None) -> list[str]:
    """Gives `count` layers in network order: convolutional layers with trainable weights
    spread evenly over the depth, first and last included, and the model's feature layer
    (its default for search) when it has a spatial map, so the sweep always shows the
    layer search uses next to raw convolution outputs."""
    convs = [layer for layer in table if _is_conv(layer) and layer.params > 0 and layer.height]
    extra = [layer for layer in table if layer.name == feature_layer and layer.height
             and layer not in convs]
    wanted = count - len(extra)
    if not convs and not extra:
        raise EvaluationError("the model has no convolutional layers with weights; "
                              "name layers with --layers")
    if len(convs) > wanted:
        picks = np.unique(np.round(np.linspace(0, len(convs) - 1, wanted)).astype(int))
        convs = [convs[i] for i in picks]
    chosen = {layer.name for layer in convs + extra}
    return [layer.name for layer in table if layer.name in chosen]


def choose_layers(table: Sequence[LayerInfo], requested: Sequence[str], model: str,
                  feature_layer: str | None = None) -> list[str]:
    """Gives the layers to sweep or render, in network order: `auto` expands to
    `auto_layers`, other names must be layers of the model with a spatial map."""
    names: set[str] = set()
    for item in requested:
        if item == AUTO:
            names.update(auto_layers(table, feature_layer=feature_layer))
        else:
            layer = find_layer(table, item, model)
            if not layer.height:
                raise EvaluationError(f"{model} layer {item} has no spatial map to pool "
                                      "(choose a convolutional layer)")
            names.add(layer.name)
    return [layer.name for layer in table if layer.name in names]
