"""A feature set names what produced a vector: model, layer and pooling, and optionally a
learned projection (an adapter from `semsearch adapt`), written as one string that
round-trips, e.g. `lite0@_head_act/gem` or `lite0@_head_act/gem:shoes`. Models joined by `+`
(`lite0+lite1@_head_act/gem`) name a composite. This module is the one home of that grammar:
pooling names, composite model names, adapters and the whole string."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from semsearch.errors import FeatureSetError

POOLINGS = ("avg", "max", "gem", "flat")
GEM_DEFAULT_P = 3.0
GEM_MAX_P = 16.0
GEM_EPS = 1e-6


def gem_exponent(method: str) -> float | None:
    """Gives the exponent of a gem pooling name (`gem` -> 3.0, `gem4` -> 4.0), None for the
    other poolings, or raises FeatureSetError."""
    if not method.startswith("gem"):
        return None
    digits = method[3:]
    if not digits:
        return GEM_DEFAULT_P
    try:
        p = float(digits)
    except ValueError:
        p = float("nan")
    if not (1.0 <= p <= GEM_MAX_P) or not digits[0].isdigit():
        raise FeatureSetError(
            f"pooling {method!r}: gem takes an exponent from 1 to {GEM_MAX_P:g}, e.g. gem4"
        )
    return p


def check_pooling(method: str) -> str:
    """Gives the canonical pooling name (`gem3` -> `gem`), or raises FeatureSetError."""
    p = gem_exponent(method)
    if p is not None:
        return "gem" if p == GEM_DEFAULT_P else f"gem{p:g}"
    if method not in POOLINGS:
        raise FeatureSetError(
            f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)} (gem takes an "
            "exponent: gem4)"
        )
    return method


_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_adapter_name(name: str) -> str:
    """Gives the adapter name, or raises FeatureSetError if it is not a short plain name."""
    if not _ADAPTER_NAME.fullmatch(name):
        raise FeatureSetError(
            f"adapter name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


COMPOSITE = "+"


def split_models(name: str) -> tuple[str, ...]:
    """Gives the models a (possibly composite) model name joins: `lite0+lite1` -> both."""
    return tuple(name.split(COMPOSITE))


def join_models(models: Sequence[str]) -> str:
    """Gives the composite model name of several models (one model: its own name)."""
    return COMPOSITE.join(models)


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
        """Gives the models of the feature set, one for a single model, several for a
        composite."""
        return split_models(self.model)

    @property
    def parts(self) -> tuple[FeatureSet, ...]:
        """Gives one single-model feature set per model, at the same layer and pooling, or
        raises FeatureSetError if a model appears twice."""
        if len(set(self.models)) != len(self.models):
            raise FeatureSetError(f"{self.model}: a model appears twice in the composite")
        return tuple(FeatureSet(model, self.layer, self.pooling) for model in self.models)

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
