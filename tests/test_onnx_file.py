"""Bring your own model: ONNX files exported at test time, used as `onnx:PATH`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import TINY, tiny_net

from semsearch.config import resolve
from semsearch.embed.pooling import pool
from semsearch.errors import UnknownLayerError, UnknownModelError
from semsearch.featureset import FeatureSet
from semsearch.indexing.local import index_folder
from semsearch.models.onnx_file import OnnxInput
from semsearch.models.runtime import TorchBackbone
from semsearch.models.summary import layers
from semsearch.session import Session

HEAD = "/head_act/Clip_output_0"


def _export(module, path: Path, shape: tuple[int, ...]) -> Path:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(*shape),), str(path), dynamo=False,
                          input_names=["input"], output_names=["out"],
                          dynamic_axes={"input": {0: "n"}, "out": {0: "n"}}, opset_version=17)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tiny_net(), tmp_path_factory.mktemp("byo") / "tiny.onnx", (1, 3, 32, 32))


def _session(tmp_path: Path, cache_dir: Path, **flags: object) -> Session:
    config = resolve({"db": str(tmp_path / "byo.db"), "cache_dir": str(cache_dir),
                      "onnx_mean": "127,127,127", "onnx_std": "128,128,128", **flags}, env={})
    return Session(config)


def test_layers_are_the_graphs_tensors(tiny_onnx: Path) -> None:
    table = {layer.name: layer for layer in layers(None, f"onnx:{tiny_onnx}")}  # type: ignore[arg-type]
    head = table[HEAD]
    assert (head.type, head.channels, head.height, head.stride) == ("Clip", 32, 8, 4)
    assert table["/stem/Conv_output_0"].params == 3 * 8 * 9 + 8
    assert table["out"].shape == (10,)


def test_embeds_like_the_torch_original(tiny_onnx: Path, tmp_path: Path, cache_dir: Path,
                                        gallery: Path) -> None:
    with _session(tmp_path, cache_dir, model=f"onnx:{tiny_onnx}") as session:
        fs = session.feature_set(pool="avg")
        assert fs.layer == HEAD  # the last feature map by default
        assert FeatureSet.parse(str(fs)) == fs
        report = index_folder(session.store, session.extractor(fs), gallery)
        assert report.embedded == 12
        extractor = session.extractor(fs)
        pixels = np.stack([extractor.decode(str(p))[0] for p in sorted(gallery.glob("*/*"))])
        ours = extractor.embed_many(list(pixels))
    torch_maps = TorchBackbone(TINY, ["head_act"]).run(pixels)["head_act"]
    np.testing.assert_allclose(ours, pool(torch_maps, "avg"), rtol=1e-4, atol=1e-6)


def test_nhwc_models_are_read_channels_last(tmp_path: Path, cache_dir: Path) -> None:
    from torch import nn

    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.net.stem(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    path = _export(ChannelsLast(), tmp_path / "nhwc.onnx", (1, 32, 32, 3))
    with _session(tmp_path, cache_dir, model=f"onnx:{path}", onnx_layout="nhwc") as session:
        fs = session.feature_set(layer="out", pool="max")
        extractor = session.extractor(fs)
        assert extractor.dim == 8
        images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        ours = extractor.embed_many(list(images))
    torch_maps = TorchBackbone(TINY, ["stem"]).run(images)["stem"]
    np.testing.assert_allclose(ours, pool(torch_maps, "max"), rtol=1e-4, atol=1e-6)


def test_bad_models_and_layers_are_clear_errors(tiny_onnx: Path, tmp_path: Path,
                                                cache_dir: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with _session(tmp_path, cache_dir) as session:
        with pytest.raises(UnknownModelError, match="no ONNX file"):
            session.feature_set(model="onnx:/no/such.onnx")
        with pytest.raises(UnknownModelError, match="not a readable ONNX model"):
            session.feature_set(model=f"onnx:{junk}")
        with pytest.raises(UnknownLayerError):
            session.extractor(session.feature_set(model=f"onnx:{tiny_onnx}", layer="nope"))
        with pytest.raises(UnknownModelError, match="takes 32x32"):
            layers(None, f"onnx:{tiny_onnx}", OnnxInput(size=224))  # type: ignore[arg-type]


def test_bgr_models_get_their_channels_reversed(tmp_path: Path, cache_dir: Path) -> None:
    from torch import nn

    class TrainedOnBgr(nn.Module):
        """The tiny net behind a layer that undoes BGR: fed BGR, it sees RGB."""

        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.net.stem(x.flip(1))

    path = _export(TrainedOnBgr(), tmp_path / "bgr.onnx", (1, 3, 32, 32))
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    expected = pool(TorchBackbone(TINY, ["stem"]).run(images)["stem"], "avg")
    with _session(tmp_path, cache_dir, model=f"onnx:{path}", onnx_channels="bgr") as session:
        ours = session.extractor(session.feature_set(layer="out", pool="avg")).embed_many(
            list(images))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


def test_changed_normalization_gives_new_vectors(tiny_onnx: Path, tmp_path: Path,
                                                 cache_dir: Path, gallery: Path) -> None:
    db = tmp_path / "n.db"
    for mean in ("127,127,127", "0,0,0"):
        config = resolve({"db": str(db), "cache_dir": str(cache_dir),
                          "model": f"onnx:{tiny_onnx}", "onnx_mean": mean}, env={})
        with Session(config) as session:
            report = index_folder(session.store, session.extractor(session.feature_set()),
                                  gallery)
            assert report.embedded == 12  # the second run does not reuse the first's vectors
    with Session(config) as session:
        keys = [r.preprocessing for r in session.store.feature_sets()]
    assert len(keys) == 2 and "mean127,127,127" in keys[0] and "mean0,0,0" in keys[1]


def test_search_uses_the_vectors_of_the_current_normalization(
        tiny_onnx: Path, tmp_path: Path, cache_dir: Path, gallery: Path) -> None:
    db = tmp_path / "m.db"

    def config(mean: str):  # type: ignore[no-untyped-def]
        return resolve({"db": str(db), "cache_dir": str(cache_dir),
                        "model": f"onnx:{tiny_onnx}", "onnx_mean": mean}, env={})

    for mean in ("127,127,127", "0,0,0"):
        with Session(config(mean)) as session:
            session.index(str(gallery))
    with Session(config("127,127,127")) as session:
        record = session.indexed_feature_set(session.feature_set())
        assert "mean127,127,127" in record.preprocessing
        assert "mean127,127,127" in session.indexed_feature_set(None).preprocessing


def test_damaged_cached_graph_of_a_users_model_is_made_again(tiny_onnx: Path,
                                                             tmp_path: Path) -> None:
    with _session(tmp_path, tmp_path / "cache", model=f"onnx:{tiny_onnx}") as session:
        fs = session.feature_set(pool="avg")
        first = session.extractor(fs).embed_many([np.zeros((32, 32, 3), np.uint8)])
    [cached] = (tmp_path / "cache" / "onnx").glob("byo-*.onnx")
    cached.write_bytes(cached.read_bytes()[:100])
    with _session(tmp_path, tmp_path / "cache", model=f"onnx:{tiny_onnx}") as session:
        again = session.extractor(fs).embed_many([np.zeros((32, 32, 3), np.uint8)])
    np.testing.assert_allclose(again, first, rtol=1e-6)
