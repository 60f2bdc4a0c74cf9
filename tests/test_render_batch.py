"""Channels rendered as a batch (one optimization, an image per channel with its own
objective) on the tiny network: each picture is its single render's, the cache is shared
with single renders, and the render jobs and their routes report progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import labeled_folder

from semsearch.config import resolve
from semsearch.errors import QueryError
from semsearch.explore.channels import channel_image, channel_images
from semsearch.explore.renders import Renderer, RenderJob, prerender_plan
from semsearch.explore.visualize import RenderSettings, render_channel, render_channels
from semsearch.models.registry import ModelRegistry
from semsearch.session import Session

FAST = RenderSettings(steps=2, size=48)
CHANNELS = [5, 2, 9, 0]


@pytest.fixture
def tiny_session(tmp_path: Path, tiny_registry: ModelRegistry) -> Iterator[Session]:
    """conftest's tiny session with a cache of its own: the renders made here (some with
    the default settings, through the routes) stay out of the session-wide cache that
    other tests' renders expect to find empty."""
    config = resolve({"db": str(tmp_path / "cat.db"), "cache_dir": str(tmp_path / "cache"),
                      "model": "tiny"}, env={})
    with Session(config, registry=tiny_registry) as session:
        yield session


def _render(net, channels, settings=FAST):  # type: ignore[no-untyped-def]
    return render_channels(net, "block", channels, mean=127.0, std=128.0, input_size=32,
                           settings=settings)


def test_a_batch_gives_each_channel_its_single_render(tiny_session: Session) -> None:
    net, _ = tiny_session.network("tiny")
    made = _render(net, CHANNELS)
    assert len(made) == len(CHANNELS)
    for channel, batched in zip(CHANNELS, made, strict=True):
        alone = render_channel(net, "block", channel, mean=127.0, std=128.0, input_size=32,
                               settings=FAST)
        assert batched.image.shape == alone.image.shape == (48, 48, 3)
        assert batched.image.dtype == np.uint8
        # The same seed, transforms and steps; only the batched kernels' rounding differs.
        assert np.abs(batched.image.astype(int) - alone.image).max() <= 2
        assert batched.activation == pytest.approx(alone.activation, abs=1e-4)
    assert all(p.requires_grad for p in net.parameters())
    assert _render(net, []) == []
    with pytest.raises(QueryError, match="16 channels"):
        _render(net, [3, 16])


def test_each_image_of_a_batch_excites_its_own_channel_most(tiny_session: Session) -> None:
    import torch

    net, _ = tiny_session.network("tiny")
    made = _render(net, CHANNELS, replace(FAST, steps=30))
    pixels = torch.tensor(np.stack([m.image for m in made])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        maps = net.block(net.stem_act(net.stem((pixels - 127.0) / 128.0)))
    means = maps.mean(dim=(2, 3))[:, CHANNELS]  # image i, channel j
    for i in range(len(CHANNELS)):
        assert int(means[:, i].argmax()) == i, means


def test_batched_renders_share_the_single_renders_cache(tiny_session: Session) -> None:
    settings = replace(FAST, seed=11)
    heard: list[tuple[int, int]] = []
    made = channel_images(tiny_session, "tiny", "block", [4, 1, 4, 7], settings, batch=2,
                          progress=lambda done, total: heard.append((done, total)))
    assert [m.path.name.split("-")[0] for m in made] == ["4", "1", "4", "7"]
    assert not any(m.cached for m in made) and made[0].path == made[2].path
    assert heard[-1] == (4, 4) and len(heard) == 4  # two batches of two steps
    again = channel_image(tiny_session, "tiny", "block", 1, settings, render=False)
    assert again.cached and again.path == made[1].path
    single = channel_image(tiny_session, "tiny", "block", 3, settings)
    mixed = channel_images(tiny_session, "tiny", "block", [3, 1, 5], settings)
    assert [m.cached for m in mixed] == [True, True, False]
    assert mixed[0].path == single.path


def _finished(renderer: Renderer, job: RenderJob, seconds: float = 60) -> RenderJob:
    deadline = time.monotonic() + seconds
    while job.active and time.monotonic() < deadline:
        time.sleep(0.02)
    return job


def test_render_jobs_run_batches_newest_first_with_progress(tiny_session: Session) -> None:
    renderer = Renderer(tiny_session, replace(FAST, seed=12), batch=4)
    _, lock = tiny_session.network("tiny")
    with lock:  # the worker waits on the model while both jobs are queued
        first = renderer.submit("tiny", "block", range(8))
        second = renderer.submit("tiny", "head", [0, 1])
        assert first.steps_total == 4  # two batches of two steps
        assert first.state in ("queued", "running") and first.fraction == 0
    _finished(renderer, first)
    assert second.state == first.state == "done"
    assert second.finished is not None and first.finished is not None
    assert second.finished <= first.finished  # the newer request went first
    assert first.rendered == list(range(8)) and first.fraction == 1
    assert first.eta(None) == 0 and renderer.seconds_per_step(first) is not None
    cached = renderer.submit("tiny", "block", [2, 3])
    assert cached.state == "done" and cached.rendered == [2, 3]
    with pytest.raises(QueryError):
        renderer.submit("tiny", "block", [99])
    renderer.close()


def test_a_cancelled_job_stops_and_the_prerender_gives_way(tiny_session: Session) -> None:
    renderer = Renderer(tiny_session, replace(FAST, steps=400, seed=13), batch=2)
    job = renderer.submit("tiny", "head", range(6))
    while job.steps_done < 2:
        time.sleep(0.01)
    renderer.cancel(job.id)
    _finished(renderer, job)
    assert job.state == "cancelled" and len(job.rendered) < 6

    plan = prerender_plan(tiny_session, ["tiny"])
    assert plan[0] == ("tiny", "head_act") and ("tiny", "stem") in plan
    quick = Renderer(tiny_session, replace(FAST, steps=200, seed=13), batch=30, idle_after=0)
    quick.prerender(lambda: [("tiny", "head_act"), ("tiny", "stem")])
    while not quick.jobs() or not quick.jobs()[0].steps_done:
        time.sleep(0.01)
    background = quick.jobs()[0]
    assert background.background and quick.planned == 1
    asked = quick.submit("tiny", "block", [0])
    _finished(quick, asked)
    assert asked.state == "done" and background.active  # it waited, and goes on after
    _finished(quick, background)
    assert background.state == "done" and background.rendered == list(range(30))
    deadline = time.monotonic() + 60
    while quick.planned or any(j.active for j in quick.jobs()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [j.layer for j in quick.jobs()] == ["head_act", "block", "stem"]
    quick.close()


def test_render_routes(tiny_session: Session) -> None:
    from fastapi.testclient import TestClient

    from semsearch.web.app import create_app

    app = create_app(tiny_session.config, session=tiny_session, allowed_hosts=("testserver",))
    client = TestClient(app)
    url = "/api/models/tiny/layers/block/renders"
    assert client.post(url, json={"channels": [0]},
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post(url, json={"channels": [16]}).status_code == 422
    assert client.post(url, json={"channels": []}).status_code == 422
    assert client.post("/api/models/tiny/layers/nope/renders",
                       json={"channels": [0]}).status_code == 404
    made = client.post(url, json={"channels": list(range(16))})
    assert made.status_code == 200
    job = made.json()
    assert job["layer"] == "block" and job["channels"] == list(range(16))
    assert job["state"] in ("queued", "running") and job["total"] > 0
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = client.get(f"/api/renders/{job['id']}").json()
    assert job["state"] == "done" and job["rendered"] == list(range(16))
    assert job["fraction"] == 1 and job["eta_seconds"] == 0
    for channel in (0, 15):
        tile = client.get(f"/api/models/tiny/layers/block/channels/{channel}/image",
                          params={"render": "false"})
        assert tile.status_code == 200 and tile.headers["x-render-cached"] == "yes"
    again = client.post(url, json={"channels": [3, 4]}).json()
    assert again["state"] == "done" and again["rendered"] == [3, 4]  # from the cache
    assert client.get("/api/renders").json() == {"jobs": [], "planned_layers": 0}
    assert client.get("/api/renders/9999").status_code == 404
    assert client.delete(f"/api/renders/{again['id']}").json()["state"] == "done"
    assert client.delete("/api/renders/9999").status_code == 404


def test_the_server_prerenders_while_idle_and_says_so(tiny_session: Session,
                                                      tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from semsearch.web.app import create_app
    from semsearch.web.routes.explore import prerender, renderer_of

    app = create_app(tiny_session.config, session=tiny_session, allowed_hosts=("testserver",))
    client = TestClient(app)
    renderer = renderer_of(app)
    renderer.settings, renderer.idle_after = replace(FAST, steps=30, seed=14), 0.2
    tiny_session.index(str(labeled_folder(tmp_path / "photos", 3)))
    prerender(app)  # the catalogue's models: tiny
    seen = []
    deadline = time.monotonic() + 60
    while True:
        queue = client.get("/api/renders").json()
        seen += [(j["layer"], j["background"]) for j in queue["jobs"]]
        if not queue["jobs"] and not queue["planned_layers"] and seen:
            break
        assert time.monotonic() < deadline, queue
        time.sleep(0.01)
    # The feature layer first, then the sweep's convolutions; every one a background job.
    layers = list(dict.fromkeys(layer for layer, _ in seen))
    assert layers[0] == "head_act" and set(layers) <= {"head_act", "stem", "block", "head"}
    assert all(background for _, background in seen)
    made = client.post("/api/models/tiny/layers/block/renders", json={"channels": [0, 15]})
    assert made.json()["state"] == "done"  # pre-rendered
    renderer.close()


def test_the_prerender_waits_while_the_server_is_asked_things(tiny_session: Session) -> None:
    renderer = Renderer(tiny_session, replace(FAST, steps=80, seed=15), idle_after=0.3)
    renderer.prerender(lambda: [("tiny", "head_act")])
    for _ in range(10):  # requests keep coming: nothing starts
        renderer.touch()
        time.sleep(0.1)
        assert not renderer.jobs()
    while not renderer.jobs() or not renderer.jobs()[0].steps_done:  # idle: it starts
        time.sleep(0.02)
    job = renderer.jobs()[0]
    renderer.touch()  # a request: it stops between two steps, and starts again once idle
    deadline = time.monotonic() + 10
    while job.state == "running" and job.steps_done:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert job.active and job.steps_done == 0
    _finished(renderer, job)
    assert job.state == "done" and job.background
    renderer.close()


def test_only_the_catalogues_torch_models_are_prerendered(tiny_session: Session,
                                                         tmp_path: Path) -> None:
    from semsearch.explore.renders import catalogue_models

    assert catalogue_models(tiny_session) == []  # nothing indexed
    tiny_session.index(str(labeled_folder(tmp_path / "photos", 3)))
    assert catalogue_models(tiny_session) == ["tiny"]
