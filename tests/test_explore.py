"""The model explorer's library: channel visualizations (two optimization steps on the tiny
network), their cache, top-activating images, activation maps, the exact similarity shares
of "why similar", and class maps; and the routes that serve them."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset, labeled_folder
from tests.rankings import assert_same_ranking

from semsearch.errors import NotIndexedError, QueryError, UnknownLayerError
from semsearch.explore.channels import activation_overlay, channel_image, top_activating
from semsearch.explore.visualize import RenderSettings, render_channel
from semsearch.explore.why import class_map, similarity_maps, top_classes
from semsearch.featureset import FeatureSet
from semsearch.query.collection import get_collection
from semsearch.session import Session

FAST = RenderSettings(steps=2, size=48)


def test_render_gives_an_image_and_stops_at_the_layer(tiny_session: Session) -> None:
    net, _ = tiny_session.network("tiny")
    calls = []
    handle = net.head.register_forward_hook(lambda *args: calls.append(1))
    try:
        made = render_channel(net, "stem_act", 3, mean=127.0, std=128.0, input_size=32,
                              settings=FAST)
    finally:
        handle.remove()
    assert made.image.shape == (48, 48, 3) and made.image.dtype == np.uint8
    assert calls == []  # nothing after the layer ran
    again = render_channel(net, "stem_act", 3, mean=127.0, std=128.0, input_size=32,
                           settings=FAST)
    np.testing.assert_array_equal(again.image, made.image)  # seeded
    assert made.cpu_seconds > 0 and all(p.requires_grad for p in net.parameters())


def test_optimizing_raises_the_channel(tiny_session: Session) -> None:
    net, _ = tiny_session.network("tiny")
    start = render_channel(net, "block", 5, mean=127.0, std=128.0, input_size=32,
                           settings=replace(FAST, steps=1))
    longer = render_channel(net, "block", 5, mean=127.0, std=128.0, input_size=32,
                            settings=replace(FAST, steps=40))
    assert longer.activation > start.activation


def test_channel_images_are_cached(tiny_session: Session) -> None:
    with pytest.raises(NotIndexedError, match="not rendered yet"):
        channel_image(tiny_session, "tiny", "block", 2, FAST, render=False)
    first = channel_image(tiny_session, "tiny", "block", 2, FAST)
    second = channel_image(tiny_session, "tiny", "block", 2, FAST, render=False)
    assert not first.cached and second.cached and first.path == second.path
    assert Image.open(first.path).size == (48, 48)
    other = channel_image(tiny_session, "tiny", "block", 2, replace(FAST, steps=3))
    assert other.path != first.path  # every setting is part of the key
    for damage in ("{broken", '{"activation": null}', "[]"):
        first.path.with_suffix(".json").write_text(damage)
        assert not channel_image(tiny_session, "tiny", "block", 2, FAST).cached
    first.path.write_bytes(first.path.read_bytes()[:60])  # a truncated picture
    assert not channel_image(tiny_session, "tiny", "block", 2, FAST).cached
    with pytest.raises(QueryError, match="16 channels"):
        channel_image(tiny_session, "tiny", "block", 16, FAST)
    with pytest.raises(UnknownLayerError):
        channel_image(tiny_session, "tiny", "nope", 0, FAST)


@pytest.fixture
def photos(tiny_session: Session, tmp_path: Path) -> Path:
    root = labeled_folder(tmp_path / "photos", 12)
    tiny_session.index(str(root))
    return root


def test_top_activating_images(tiny_session: Session, photos: Path) -> None:
    collection = get_collection(tiny_session.store, tiny_session.store.collections()[0][0])
    top = top_activating(tiny_session, collection, "tiny", "block", 4, k=5)
    assert len(top) == 5
    values = [t.activation for t in top]
    assert values == sorted(values, reverse=True)
    # It is the channel's maximum over the map, image by image.
    backbone = tiny_session.backbone("tiny", ["block"])
    spec = tiny_session.spec("tiny")
    from semsearch.embed.extractors import decode_input

    every = {}
    for path in sorted(photos.glob("*/*.png")):
        pixels, _ = decode_input(spec, 10**8, str(path))
        every[str(path)] = float(backbone.run(pixels[None])["block"][0, 4].max())
    best = sorted(every.items(), key=lambda kv: -kv[1])[:5]
    # A batch and single images are two runs of the network: ties may fall either way.
    assert_same_ranking([t.image.path for t in top], values, [path for path, _ in best],
                        [v for _, v in best], tol=1e-4)
    np.testing.assert_allclose(values, [v for _, v in best], rtol=1e-5)
    png = activation_overlay(tiny_session, top[0].image.path, "tiny", "block", 4)
    assert Image.open(io.BytesIO(png)).size == (32, 32)


@pytest.mark.parametrize("pooling", ["avg", "gem", "gem1", "gem4", "max"])
def test_similarity_shares_add_up_to_the_cosine(tiny_session: Session, photos: Path,
                                                pooling: str) -> None:
    a, b = str(photos / "class0" / "img00.png"), str(photos / "class1" / "img01.png")
    for model in ("tiny", "tiny+tiny2"):
        fs = FeatureSet(model, "block", pooling)
        maps = similarity_maps(tiny_session, fs, a, b)
        ea = tiny_session.extractor(fs).embed_image(a)
        eb = tiny_session.extractor(fs).embed_image(b)
        cosine = float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb))
        assert maps.similarity == pytest.approx(cosine, abs=1e-4)
        assert maps.query_map.sum() == pytest.approx(cosine, abs=1e-3)
        assert maps.result_map.sum() == pytest.approx(cosine, abs=1e-3)
        assert Image.open(io.BytesIO(maps.query_png)).size == (32, 32)
    with pytest.raises(QueryError, match="no spatial map"):
        similarity_maps(tiny_session, FeatureSet("tiny", "fc", "avg"), a, b)


def test_classes_and_class_maps(tiny_session: Session, photos: Path) -> None:
    image = str(photos / "class2" / "img02.png")
    guesses = top_classes(tiny_session, "tiny", image)
    assert len(guesses) == 5 and guesses[0].name == f"class {guesses[0].index}"
    probabilities = [g.probability for g in guesses]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    png = class_map(tiny_session, "tiny", image, guesses[0].index)
    assert Image.open(io.BytesIO(png)).size == (32, 32)
    with pytest.raises(QueryError, match="10 classes"):
        class_map(tiny_session, "tiny", image, 10)


def test_explorer_routes(tiny_session: Session, photos: Path) -> None:
    from fastapi.testclient import TestClient

    from semsearch.web.app import create_app

    app = create_app(tiny_session.config, session=tiny_session, allowed_hosts=("testserver",))
    client = TestClient(app)
    cid = tiny_session.store.collections()[0][0]
    url = "/api/models/tiny/layers/block/channels/3/image"
    assert client.get(url, params={"render": "false"}).status_code == 404
    # Another site's page (an <img> tag, say) cannot make the server render.
    assert client.get(url, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    _, lock = tiny_session.network("tiny")
    with lock:  # a render is running: the page is told to come back, no thread waits
        busy = client.get(url)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    made = client.get(url)
    assert made.status_code == 200 and made.headers["content-type"] == "image/png"
    assert made.headers["x-render-cached"] == "no"
    assert float(made.headers["x-render-cpu-seconds"]) >= 0
    again = client.get(url, params={"render": "false"})
    assert again.status_code == 200 and again.headers["x-render-cached"] == "yes"
    assert client.get("/api/models/tiny/layers/block/channels/99/image").status_code == 422
    top = client.get(f"/api/collections/{cid}/top",
                     params={"model": "tiny", "layer": "block", "channel": 3, "k": 4}).json()
    assert len(top) == 4 and top[0]["activation"] >= top[-1]["activation"]
    first = top[0]["id"]
    overlay = client.get(f"/api/images/{first}/activation",
                         params={"model": "tiny", "layer": "block", "channel": 3})
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"
    guesses = client.get(f"/api/images/{first}/classes", params={"model": "tiny"}).json()
    assert len(guesses) == 5
    cam = client.get(f"/api/images/{first}/cam",
                     params={"model": "tiny", "class_index": guesses[0]["index"]})
    assert cam.status_code == 200
    why = client.get("/api/why", params={"query": first, "result": top[1]["id"],
                                         "feature_set": "tiny@head_act/gem"}).json()
    assert -1 <= why["similarity"] <= 1 and why["query_png"].startswith("data:image/png")


@pytest.mark.real
def test_an_optimized_image_excites_its_channel_far_more_than_real_images(
        tmp_path: Path, cache_dir: Path) -> None:
    from semsearch.config import resolve
    from semsearch.embed.extractors import decode_input
    from semsearch.models.network import PROBS  # noqa: F401 - the real registry

    images = sorted(dataset("iconic200").glob("*/*.jpg"))
    config = resolve({"db": str(tmp_path / "x.db"), "cache_dir": str(cache_dir)}, env={})
    with Session(config) as session:
        spec = session.spec("lite0")
        backbone = session.backbone("lite0", ["_head_act"])
        batch = np.stack([decode_input(spec, 10**8, str(p))[0] for p in images])
        means = np.concatenate([backbone.run(batch[i:i + 32])["_head_act"].mean(axis=(2, 3))
                                for i in range(0, len(batch), 32)]).mean(axis=0)
        for channel in (7, 300):
            made = channel_image(session, "lite0", "_head_act", channel,
                                 RenderSettings(steps=96))
            pixels = np.asarray(Image.open(made.path).convert("RGB").resize((224, 224)))
            optimized = backbone.run(pixels[None])["_head_act"][0, channel].mean()
            assert optimized >= 5 * means[channel], (channel, optimized, means[channel])


@pytest.mark.real
def test_cli_renders_channels_and_names_classes(tmp_path: Path, cache_dir: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                no_config_file: None) -> None:
    import json

    from semsearch.cli import main

    code = main(["explore", "render", "--model", "lite0", "--layers", "_conv_stem",
                 "--channels", "2", "--steps", "2", "--cache-dir", str(cache_dir), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 2 and out["layers"] == ["_conv_stem"]
    assert all(Path(f).is_file() for f in out["files"])
    code = main(["explore", "render", "--model", "lite0", "--layers", "_conv_stem",
                 "--channels", "2", "--steps", "2", "--cache-dir", str(cache_dir)])
    assert code == 0 and "0 rendered now, 2 from the cache" in capsys.readouterr().out
    banana = dataset("iconic200") / "banana" / "191.jpg"
    code = main(["explore", "classes", str(banana), "--cache-dir", str(cache_dir)])
    assert code == 0 and "banana" in capsys.readouterr().out.splitlines()[0]
    code = main(["explore", "render", "--model", "lite0", "--layers", "nope"])
    assert code == 1 and "no layer 'nope'" in capsys.readouterr().err
