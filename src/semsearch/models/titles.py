"""Human names of feature sets, for a person who does not read `lite0@_head_act/gem`:
"EfficientNet-Lite0+1+2, last layer, GeM pooling". They are made from the registry's model
descriptions and the models' layer tables; the exact string stays the identity, and the
page shows it one click away."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from semsearch.featureset import GEM_DEFAULT_P, FeatureSet, gem_exponent
from semsearch.models.layers import PROBS, LayerInfo
from semsearch.models.registry import ModelSpec

# A model's layer table by its name.
TableOf = Callable[[str], Sequence[LayerInfo]]


def model_title(spec: ModelSpec) -> str:
    """Gives a model's short name: its description up to the first comma
    ("EfficientNet-Lite0"), or its registry name when it has no description."""
    return spec.description.split(",")[0].strip() or spec.name


def models_title(specs: Sequence[ModelSpec]) -> str:
    """Gives the short name of one model or a composite, sharing the common part of the
    names: "EfficientNet-Lite0+1+2"; names with nothing in common are joined by " + "."""
    names = [model_title(spec) for spec in specs]
    if len(set(names)) < len(names):  # same descriptions: only the registry names differ
        names = [f"{name} ({spec.name})" for name, spec in zip(names, specs, strict=True)]
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    # Never split a number ("VGG16" and "VGG19" share "VGG", not "VGG1"), and share a word
    # only when the rest are numbers ("ConvNeXt" and "ConvMixer" share nothing).
    prefix = prefix.rstrip("0123456789")
    rests = [name[len(prefix):] for name in names]
    if (len(prefix) < 3 or not all(rests) or any(" " in rest for rest in rests)
            or (prefix[-1].isalnum() and not all(rest[0].isdigit() for rest in rests))):
        return " + ".join(names)
    return prefix + "+".join(name[len(prefix):] for name in names)


POOLING_TITLES = {"avg": "average pooling", "max": "max pooling", "gem": "GeM pooling",
                  "flat": "no pooling (the whole map, flattened)"}


def pooling_title(pooling: str) -> str:
    """Gives a pooling's human name: `gem` -> "GeM pooling", `gem4` -> "GeM pooling, p=4"."""
    p = gem_exponent(pooling)
    if p is not None and p != GEM_DEFAULT_P:
        return f"GeM pooling (p={p:g})"
    return POOLING_TITLES["gem" if p is not None else pooling]


# Words of module names, as a person would say them; a name with other words is given by
# its depth instead.
_WORDS = {"conv": "convolution", "bn": "normalization", "norm": "normalization",
          "act": "activation", "swish": "activation", "relu": "activation",
          "expand": "expansion", "project": "projection", "depthwise": "depthwise",
          "stem": "stem", "head": "head", "avg": "average", "pooling": "pooling",
          "pool": "pooling", "fc": "classifier", "se": "squeeze-excitation"}
_NOUNS = ("convolution", "normalization", "activation", "pooling", "classifier")
# Containers of numbered blocks whose own name says nothing ("_blocks.4" is "block 5").
_PLAIN_CONTAINERS = {"blocks", "block", "layers", "features", "stages"}
_NUMBERED = re.compile(r"^(?P<stage>.+?)\.(?P<index>\d+)(?:\.(?P<part>.+))?$")


def _spoken(name: str) -> str | None:
    """Gives a module name in words ("_conv_stem" -> "stem convolution"), or None if it has
    a word this module does not know."""
    tokens = [t.rstrip("0123456789").lower() for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    tokens = [t for t in tokens if t]
    if not tokens or any(t not in _WORDS for t in tokens):
        return None
    words = list(dict.fromkeys(_WORDS[t] for t in tokens))
    # Modifiers first, the kind of layer last: "stem convolution", not "convolution stem".
    return " ".join(sorted(words, key=lambda w: w in _NOUNS))


def layer_title(table: Sequence[LayerInfo], layer: str, classifier: str | None = None) -> str:
    """Gives a layer's human name in its model: "last layer" (the last one with a spatial
    map), "first layer", "class probabilities", "block 5 of 16, projection" for a numbered
    block's part, its name in words ("stem activation"), or else "layer 40 of 120"."""
    names = [info.name for info in table]
    if layer == PROBS:
        return "class probabilities"
    if layer not in names:
        return layer
    if classifier is not None and layer == classifier:
        return "classifier scores"
    spatial = [info.name for info in table if info.height > 1]
    if spatial and layer == spatial[-1]:
        return "last layer"
    depth = names.index(layer)
    if depth == 0:
        return "first layer"
    numbered = _NUMBERED.match(layer)
    if numbered:
        stage, index = numbered["stage"], int(numbered["index"])
        count = len({m["index"] for m in map(_NUMBERED.match, names)
                     if m and m["stage"] == stage})
        title = f"block {index + 1} of {count}"
        if stage.strip("_").lower() not in _PLAIN_CONTAINERS:
            title = f"{stage} {title}"
        if numbered["part"]:
            title += f", {_spoken(numbered['part']) or numbered['part']}"
        return title
    spoken = _spoken(layer)
    where = f"layer {depth + 1} of {len(table)}"
    # A bare kind ("normalization") says too little alone: its depth goes with it.
    return spoken if spoken and " " in spoken else f"{spoken} ({where})" if spoken else where


def _merged(titles: list[str]) -> str:
    """Gives one title for a composite's models: the shared one, the block counts side by
    side ("block 5 of 16/21/21") when only they differ, else all of them."""
    unique = list(dict.fromkeys(titles))
    if len(unique) == 1:
        return unique[0]
    counts = re.compile(r"(?<=of )\d+")
    if len({counts.sub("N", title) for title in titles}) == 1:
        numbers = [counts.findall(title) for title in titles]
        merged = ["/".join(dict.fromkeys(column)) for column in zip(*numbers, strict=True)]
        parts = counts.split(titles[0])
        return "".join(part + (merged[i] if i < len(merged) else "")
                       for i, part in enumerate(parts))
    return " / ".join(unique)


def _model_layer_title(spec: ModelSpec, layer: str, table_of: TableOf) -> str:
    """Gives the layer's human name in one model, reading its table only when the spec
    cannot tell (its default layer is its last map, as the registry and onnx_spec make it)."""
    if layer == PROBS:
        return "class probabilities"
    if layer == spec.classifier:
        return "classifier scores"
    if layer == spec.default_layer:
        return "last layer"
    return layer_title(table_of(spec.name), layer, spec.classifier)


def _has_map(spec: ModelSpec, layer: str, table_of: TableOf) -> bool:
    """Gives whether the layer has a spatial map to pool (an unknown one is said to)."""
    if layer in (PROBS, spec.classifier):
        return False
    if layer == spec.default_layer:
        return True
    info = next((info for info in table_of(spec.name) if info.name == layer), None)
    return info is None or bool(info.height)


def feature_set_title(fs: FeatureSet, specs: Sequence[ModelSpec], table_of: TableOf) -> str:
    """Gives the feature set's human name, e.g. "EfficientNet-Lite0+1+2, last layer, GeM
    pooling", from its models' specs (in order) and their layer tables, asked of `table_of`
    only where a spec cannot tell (building a table builds the network). A layer without a
    spatial map (classifier, probabilities) has no pooling to name."""
    layers = [_model_layer_title(spec, fs.layer, table_of) for spec in specs]
    parts = [models_title(specs), _merged(layers)]
    if _has_map(specs[0], fs.layer, table_of):
        parts.append(pooling_title(fs.pooling))
    if fs.adapter:
        parts.append(f"adapter {fs.adapter}")
    return ", ".join(parts)
