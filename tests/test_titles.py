"""Human names of feature sets and metrics: what the page shows instead of
`lite0+lite1+lite2@_head_act/gem, cosine + DBA k=10`."""

from __future__ import annotations

import pytest
from tests.conftest import TINY, TINY2

from semsearch.featureset import POOLINGS, FeatureSet
from semsearch.index.metric import METRICS, Metric, metric_title
from semsearch.models.network import layer_table
from semsearch.models.registry import ModelSpec, default_registry
from semsearch.models.titles import feature_set_title, layer_title, models_title, pooling_title


def _spec(description: str, name: str = "m") -> ModelSpec:
    return ModelSpec(**{**TINY.__dict__, "name": name, "description": description})


def test_composite_names_share_their_common_part() -> None:
    lites = [_spec(f"EfficientNet-Lite{i}, ImageNet-1k, 224px", f"lite{i}") for i in range(3)]
    assert models_title(lites) == "EfficientNet-Lite0+1+2"
    assert models_title(lites[:1]) == "EfficientNet-Lite0"
    assert models_title([_spec("VGG16"), _spec("VGG19")]) == "VGG16+19"
    assert models_title([_spec("ResNet-18"), _spec("ResNet-152")]) == "ResNet-18+152"
    assert models_title([_spec("ConvNeXt"), _spec("ConvMixer")]) == "ConvNeXt + ConvMixer"
    # The same description twice: the registry names tell them apart.
    assert models_title([TINY, TINY2]) == ("random-weight test network (tiny) + "
                                           "random-weight test network (tiny2)")
    assert models_title([_spec("", "bare")]) == "bare"


def test_every_pooling_has_a_name() -> None:
    names = {pooling: pooling_title(pooling) for pooling in POOLINGS}
    assert names == {"avg": "average pooling", "max": "max pooling", "gem": "GeM pooling",
                     "flat": "no pooling (the whole map, flattened)"}
    assert pooling_title("gem4") == "GeM pooling (p=4)"
    assert pooling_title("gem3") == "GeM pooling"


def test_tiny_network_layers_and_a_composite() -> None:
    table = layer_table(TINY.build(), 32, TINY.classifier)
    assert layer_title(table, "head_act", "fc") == "last layer"
    assert layer_title(table, "stem", "fc") == "first layer"
    assert layer_title(table, "stem_act", "fc") == "stem activation"
    assert layer_title(table, "block", "fc") == "layer 3 of 9"  # a word it does not know
    assert layer_title(table, "fc", "fc") == "classifier scores"
    assert layer_title(table, "probs", "fc") == "class probabilities"
    tables = {"tiny": table, "tiny2": layer_table(TINY2.build(), 40, TINY2.classifier)}
    fs = FeatureSet("tiny+tiny2", "head_act", "gem")
    assert feature_set_title(fs, [TINY, TINY2], tables.__getitem__) == (
        "random-weight test network (tiny) + random-weight test network (tiny2), last layer, "
        "GeM pooling")
    adapted = FeatureSet("tiny", "block", "max", "shoes")
    assert feature_set_title(adapted, [TINY], tables.__getitem__) == (
        "random-weight test network, layer 3 of 9, max pooling, adapter shoes")
    # No spatial map, nothing pooled: the pooling is not named.
    assert feature_set_title(FeatureSet("tiny", "probs", "avg"), [TINY], tables.__getitem__) == (
        "random-weight test network, class probabilities")
    # The default layer and the classifier need no table (building one builds the network).
    asked: list[str] = []
    def table_of(name: str) -> list:  # type: ignore[type-arg]
        asked.append(name)
        return tables[name]

    for layer in ("head_act", "fc"):
        feature_set_title(FeatureSet("tiny+tiny2", layer, "avg"), [TINY, TINY2], table_of)
    assert asked == []
    feature_set_title(FeatureSet("tiny+tiny2", "block", "avg"), [TINY, TINY2], table_of)
    assert set(asked) == {"tiny", "tiny2"}


def test_the_session_names_feature_sets_and_falls_back_to_the_string(tiny_session) -> None:  # type: ignore[no-untyped-def]
    models = tiny_session.models
    assert models.title(FeatureSet("tiny", "head_act", "avg")) == (
        "random-weight test network, last layer, average pooling")
    gone = FeatureSet("nosuchmodel", "head_act", "avg")
    assert models.title(gone) == str(gone)


def test_every_metric_has_a_line_in_words() -> None:
    lines = {name: metric_title(Metric(name)) for name in METRICS}
    assert lines == {"cosine": "cosine", "euclidean": "Euclidean distance",
                     "sqeuclidean": "squared Euclidean distance",
                     "minkowski": "Minkowski distance, p=3", "ip": "inner product"}
    assert metric_title(Metric(), 10) == (
        "cosine, with database-side augmentation over 10 neighbours")


@pytest.mark.real
def test_every_registered_model_and_their_composite() -> None:
    from semsearch.models.summary import layers

    registry = default_registry()
    specs = registry.specs()
    tables = {spec.name: layers(registry, spec.name) for spec in specs}
    blocks = {"lite0": 16, "lite1": 21, "lite2": 21}
    assert set(blocks) == set(tables)  # a new model: say here how many blocks it has
    for spec in specs:
        number = spec.name[-1]
        for pooling in POOLINGS:
            last = FeatureSet(spec.name, "_head_act", pooling)
            assert feature_set_title(last, [spec], tables.__getitem__) == (
                f"EfficientNet-Lite{number}, last layer, {pooling_title(pooling)}")
        # The spec's default layer is the last map of its table, as its title says.
        assert layer_title(tables[spec.name], spec.default_layer, spec.classifier) == "last layer"
        early = FeatureSet(spec.name, "_blocks.1._project_conv", "gem")
        assert feature_set_title(early, [spec], tables.__getitem__) == (
            f"EfficientNet-Lite{number}, block 2 of {blocks[spec.name]}, projection "
            "convolution, GeM pooling")
        stem = FeatureSet(spec.name, "_conv_stem", "avg")
        assert feature_set_title(stem, [spec], tables.__getitem__) == (
            f"EfficientNet-Lite{number}, first layer, average pooling")
    every = FeatureSet("lite0+lite1+lite2", "_head_act", "gem")
    assert feature_set_title(every, specs, tables.__getitem__) == (
        "EfficientNet-Lite0+1+2, last layer, GeM pooling")
    block = FeatureSet("lite0+lite1+lite2", "_blocks.5", "max")
    assert feature_set_title(block, specs, tables.__getitem__) == (
        "EfficientNet-Lite0+1+2, block 6 of 16/21, max pooling")
