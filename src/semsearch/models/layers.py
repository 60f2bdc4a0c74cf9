"""A network's addressable layers as plain records (name, type, output shape), and the
lookup by name; torch-free, so reading a layer table or a stored feature set never loads
torch (models/network.py is where a torch module's table is worked out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from semsearch.errors import UnknownLayerError

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
