"""Layers, poolings, feature-set names and the two runtimes, on the tiny network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.conftest import TINY

from semsearch.embed.pooling import pool, pooled_dim
from semsearch.errors import FeatureSetError, UnknownLayerError, UnknownModelError
from semsearch.featureset import FeatureSet
from semsearch.models.layers import PROBS, find_layer
from semsearch.models.network import layer_table
from semsearch.models.registry import default_registry
from semsearch.models.runtime import OnnxBackbone, TorchBackbone, graph_key


def test_layer_table_uses_real_module_names() -> None:
    table = layer_table(TINY.build(), 32, TINY.classifier)
    names = [layer.name for layer in table]
    assert names == ["stem", "stem_act", "block", "block_act", "head", "head_act", "pool",
                     "fc", PROBS]
    head = find_layer(table, "head_act", "tiny")
    assert (head.channels, head.height, head.stride, head.type) == (32, 8, 4, "ReLU6")
    assert find_layer(table, "block", "tiny").params == 8 * 16 * 9 + 16
    assert find_layer(table, PROBS, "tiny").shape == (10,)
    with pytest.raises(UnknownLayerError, match="semsearch layers tiny"):
        find_layer(table, "nope", "tiny")


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(UnknownModelError, match="lite0, lite1, lite2"):
        default_registry().get("resnet50")


@pytest.mark.parametrize("layers", [["head_act"], ["stem", "block_act", "fc", PROBS]])
def test_onnx_agrees_with_torch(cache_dir: Path, layers: list[str]) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    reference = TorchBackbone(TINY, layers).run(images)
    fast = OnnxBackbone(TINY, layers, cache_dir)
    assert fast.path.exists() and fast.path.parent == cache_dir / "onnx"
    out = fast.run(images)
    for layer in layers:
        np.testing.assert_allclose(out[layer], reference[layer], rtol=1e-4, atol=1e-5)
    if PROBS in out:
        np.testing.assert_allclose(out[PROBS].sum(axis=1), 1.0, rtol=1e-5)
    assert fast.output_shape(layers[0]) == reference[layers[0]].shape[1:]


def test_graph_cache_is_keyed_by_layers_and_weights() -> None:
    assert graph_key(TINY, ["head"]) != graph_key(TINY, ["head_act"])
    assert graph_key(TINY, ["head"]) == graph_key(TINY, ["head"])
    other = TINY.__class__(**{**TINY.__dict__, "weights_id": lambda: "other"})
    assert graph_key(other, ["head"]) != graph_key(TINY, ["head"])


def test_unknown_layer_is_refused_before_export(cache_dir: Path) -> None:
    with pytest.raises(UnknownLayerError):
        OnnxBackbone(TINY, ["missing"], cache_dir)


def test_poolings() -> None:
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(pool(x, "avg"), x.mean(axis=(2, 3)))
    np.testing.assert_allclose(pool(x, "max"), x.max(axis=(2, 3)))
    gem = pool(x, "gem")
    assert (pool(x, "avg") <= gem + 1e-5).all() and (gem <= pool(x, "max") + 1e-5).all()
    expected = np.cbrt(np.power(np.maximum(x, 1e-6), 3).mean(axis=(2, 3)))
    np.testing.assert_allclose(gem, expected, rtol=1e-5)
    np.testing.assert_allclose(pool(x, "gem1"), pool(x, "avg"), rtol=1e-5)
    assert (pool(x, "gem16") <= pool(x, "max") + 1e-4).all()
    big = np.full((1, 2, 3, 3), 1e6, np.float32)  # 1e6 ** 16 overflows float32 and float64
    np.testing.assert_allclose(pool(big, "gem16"), 1e6, rtol=1e-5)
    assert pool(x, "flat").shape == (2, 12)
    vec = np.ones((2, 10), np.float32)
    assert pool(vec, "gem").shape == (2, 10)


def test_flat_pooling_is_capped() -> None:
    assert pooled_dim((32, 112, 112), "avg", 1000) == 32
    assert pooled_dim((4, 2, 2), "flat", 1000) == 16
    with pytest.raises(FeatureSetError, match="flat_max_dims"):
        pooled_dim((32, 112, 112), "flat", 200_000)


@pytest.mark.parametrize("text", ["lite0@_head_act/gem", "lite2@_blocks.15._bn2/flat",
                                  "tiny@probs/avg"])
def test_feature_set_names_round_trip(text: str) -> None:
    assert str(FeatureSet.parse(text)) == text


def test_gem_exponent_is_part_of_the_name() -> None:
    assert str(FeatureSet.parse("lite0@x/gem3")) == "lite0@x/gem"
    assert FeatureSet.parse("lite0@x/gem4") != FeatureSet.parse("lite0@x/gem")
    assert str(FeatureSet.parse("lite0@x/gem2.5")) == "lite0@x/gem2.5"


@pytest.mark.parametrize("text", ["lite0", "lite0@_head_act", "lite0@x/median", "@x/avg",
                                  "lite0@x/gem0.5", "lite0@x/gem60", "lite0@x/geminf",
                                  "lite0@x/gemnan", "lite0@x/gem-2"])
def test_bad_feature_set_names(text: str) -> None:
    with pytest.raises(FeatureSetError):
        FeatureSet.parse(text)


def test_damaged_cached_graph_is_exported_again(tmp_path: Path) -> None:
    first = OnnxBackbone(TINY, ["block"], tmp_path)
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 3])
    again = OnnxBackbone(TINY, ["block"], tmp_path)
    images = np.zeros((1, 32, 32, 3), np.uint8)
    np.testing.assert_allclose(again.run(images)["block"], first.run(images)["block"])
