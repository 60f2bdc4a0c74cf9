"""A feature set names what produced a vector: model, layer and pooling, written as one string
that round-trips, e.g. `lite0@_head_act/gem`."""

from __future__ import annotations

from dataclasses import dataclass

from semsearch.errors import FeatureSetError
from semsearch.pooling import check_pooling


@dataclass(frozen=True, order=True)
class FeatureSet:
    model: str
    layer: str
    pooling: str

    def __post_init__(self) -> None:
        # Slashes are allowed (ONNX tensor names, file paths): the pooling is always the
        # part after the last one, so the string still round-trips.
        for part, value in (("model", self.model), ("layer", self.layer)):
            if not value or "@" in value or any(ch in value for ch in "\t\n"):
                raise FeatureSetError(f"feature set {part} {value!r} is empty or has @")
        object.__setattr__(self, "pooling", check_pooling(self.pooling))

    def __str__(self) -> str:
        return f"{self.model}@{self.layer}/{self.pooling}"

    @classmethod
    def parse(cls, text: str) -> FeatureSet:
        """Gives the feature set written as `model@layer/pooling`."""
        model, at, rest = text.strip().partition("@")
        layer, slash, pooling = rest.rpartition("/")
        if not at or not slash:
            raise FeatureSetError(
                f"feature set {text!r} is not of the form model@layer/pooling "
                "(e.g. lite0@_head_act/gem)"
            )
        return cls(model, layer, pooling)
