"""A feature set names what produced a vector: model, layer and pooling, and optionally a
learned projection (an adapter from `semsearch adapt`), written as one string that
round-trips, e.g. `lite0@_head_act/gem` or `lite0@_head_act/gem:shoes`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from semsearch.errors import FeatureSetError
from semsearch.pooling import check_pooling

_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_adapter_name(name: str) -> str:
    """Gives the adapter name, or raises FeatureSetError if it is not a short plain name."""
    if not _ADAPTER_NAME.fullmatch(name):
        raise FeatureSetError(
            f"adapter name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


def model_parts(model: str) -> tuple[str, ...]:
    """Gives the models a composite model name (`a+b`) joins, in order; one for a plain name."""
    return tuple(model.split("+"))


@dataclass(frozen=True, order=True)
class FeatureSet:
    model: str
    layer: str
    pooling: str
    adapter: str = ""

    def __post_init__(self) -> None:
        # Slashes are allowed (ONNX tensor names, file paths): the pooling is always the
        # part after the last one, so the string still round-trips.
        for part, value in (("model", self.model), ("layer", self.layer)):
            if not value or "@" in value or any(ch in value for ch in "\t\n"):
                raise FeatureSetError(f"feature set {part} {value!r} is empty or has @")
        object.__setattr__(self, "pooling", check_pooling(self.pooling))
        if self.adapter:
            check_adapter_name(self.adapter)

    def __str__(self) -> str:
        suffix = f":{self.adapter}" if self.adapter else ""
        return f"{self.model}@{self.layer}/{self.pooling}{suffix}"

    @property
    def models(self) -> tuple[str, ...]:
        """Gives the models whose vectors the feature set joins, in order."""
        return model_parts(self.model)

    @property
    def base(self) -> FeatureSet:
        """Gives the feature set without its adapter: what the adapter projects from."""
        return FeatureSet(self.model, self.layer, self.pooling)

    def adapted(self, adapter: str) -> FeatureSet:
        return FeatureSet(self.model, self.layer, self.pooling, adapter)

    @classmethod
    def parse(cls, text: str) -> FeatureSet:
        """Gives the feature set written as `model@layer/pooling[:adapter]`."""
        model, at, rest = text.strip().partition("@")
        layer, slash, pooling = rest.rpartition("/")
        if not at or not slash:
            raise FeatureSetError(
                f"feature set {text!r} is not of the form model@layer/pooling "
                "(e.g. lite0@_head_act/gem)"
            )
        pooling, _, adapter = pooling.partition(":")
        return cls(model, layer, pooling, adapter)
