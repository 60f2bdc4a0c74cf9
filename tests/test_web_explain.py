"""What the API adds for a newcomer: feature sets and metric lines in words beside their exact
strings, and tags marked confident or not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import labeled_folder
from tests.test_web_api import _jpeg, _ok, web  # noqa: F401  (web is a fixture)

from semsearch.featureset import FeatureSet
from semsearch.session import Session

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semsearch.web.app import create_app  # noqa: E402

Web = tuple[TestClient, Session, Path]
TINY_LAST = "random-weight test network, last layer, GeM pooling"


def test_feature_sets_of_a_collection_have_a_title(web: Web) -> None:  # noqa: F811
    client, session, root = web
    session.index(str(root), feature_set=FeatureSet("tiny", "stem_act", "avg"))
    cid = _ok(client.get("/api/collections"))[0]["id"]
    detail = _ok(client.get(f"/api/collections/{cid}"))
    titles = {fs["name"]: fs["title"] for fs in detail["feature_sets"]}
    assert titles == {"tiny@head_act/gem": TINY_LAST,
                      "tiny@stem_act/avg": "random-weight test network, stem activation, "
                                           "average pooling"}
    # The existing fields are unchanged.
    first = detail["feature_sets"][0]
    assert {"depth", "name", "model", "layer", "pooling", "adapter", "dim", "vectors",
            "title"} <= set(first)


def test_searches_say_their_feature_set_and_metric_in_words(web: Web) -> None:  # noqa: F811
    client, _, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    image_id = _ok(client.get(f"/api/collections/{cid}/images"))["images"][0]["id"]
    url = f"/api/collections/{cid}/search"
    result = _ok(client.get(url, params={"image_id": image_id}))
    assert result["feature_set"] == "tiny@head_act/gem" and result["metric"] == "cosine"
    assert result["title"] == TINY_LAST and result["metric_title"] == "cosine"
    euclid = _ok(client.get(url, params={"image_id": image_id, "metric": "minkowski"}))
    assert euclid["metric"] == "minkowski(p=3)"
    assert euclid["metric_title"] == "Minkowski distance, p=3"
    upload = _ok(client.post(f"{url}/upload", content=_jpeg(), params={"k": 3},
                             headers={"Content-Type": "image/jpeg"}))
    assert upload["title"] == TINY_LAST and upload["metric_title"] == "cosine"
    schema = _ok(client.get("/openapi.json"))["components"]["schemas"]
    assert {"title", "metric_title"} <= set(schema["SearchResponse"]["required"])
    assert "title" in schema["FeatureSetOut"]["required"]


def test_database_side_augmentation_is_said_in_words(tiny_session: Session,
                                                     tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "photos", 12)
    session = Session(replace(tiny_session.config, expand_k=4), registry=tiny_session.registry,
                      store=tiny_session.store)
    session.index(str(root))
    with TestClient(create_app(session.config, session=session,
                               allowed_hosts=("testserver",))) as client:
        cid = _ok(client.get("/api/collections"))[0]["id"]
        image_id = _ok(client.get(f"/api/collections/{cid}/images"))["images"][0]["id"]
        result = _ok(client.get(f"/api/collections/{cid}/search",
                                params={"image_id": image_id}))
    assert result["metric"] == "cosine + DBA k=4"
    assert result["metric_title"] == "cosine, with database-side augmentation over 4 neighbours"


def test_tags_say_whether_they_are_confident(web: Web,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch.query import words
    from semsearch.query.text_model import TAG_MIN_SCORE, Tag

    client, _, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    image_id = _ok(client.get(f"/api/collections/{cid}/images"))["images"][0]["id"]
    # The tiny network has no ImageNet classifier to tag with; the route's own work is
    # what is tested here (the real tags: test_text.py).
    scores = [0.98, TAG_MIN_SCORE, TAG_MIN_SCORE - 0.01, 0.55]
    monkeypatch.setattr(words, "fresh_image_tags", lambda _session, _id, k: [
        Tag(f"word{i}", score) for i, score in enumerate(scores)][:k])
    tags = _ok(client.get(f"/api/images/{image_id}/tags"))
    assert [(t["word"], t["confident"]) for t in tags] == [
        ("word0", True), ("word1", True), ("word2", False), ("word3", False)]
    assert tags[0]["score"] == 0.98
