"""The JSON API in-process: every route on a real catalogue of generated images with the tiny
network, and the refusals: uploads too large or not images, hostile URLs, paths."""

from __future__ import annotations

import io
import ipaddress
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.conftest import labeled_folder, make_image

from semsearch.evaluate.sweep import run_sweep
from semsearch.featureset import FeatureSet
from semsearch.session import Session
from semsearch.web.fetch import FetchPolicy

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semsearch.web.app import create_app  # noqa: E402


def _jpeg(seed: int = 3, size: tuple[int, int] = (64, 48)) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return make_image(Path(tmp) / "q.jpg", seed=seed, size=size).read_bytes()


@pytest.fixture
def web(tiny_session: Session, tmp_path: Path) -> Iterator[tuple[TestClient, Session, Path]]:
    root = labeled_folder(tmp_path / "photos", 18)
    session = Session(replace(tiny_session.config, expand_k=0), registry=tiny_session.registry,
                      store=tiny_session.store)
    session.index(str(root))
    policy = FetchPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))
    app = create_app(session.config, session=session, fetch_policy=policy,
                     upload_max_bytes=200_000, allowed_hosts=("testserver",))
    with TestClient(app) as client:
        yield client, session, root


def _ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_collections_images_and_thumbnails(web: tuple[TestClient, Session, Path]) -> None:
    client, session, root = web
    (collection,) = _ok(client.get("/api/collections"))
    assert collection["root"] == str(root) and collection["images"] == 18
    assert collection["labels"] == {"class0": 6, "class1": 6, "class2": 6}
    assert collection["labeled"] is True
    detail = _ok(client.get(f"/api/collections/{collection['id']}"))
    assert detail["default_feature_set"] == "tiny@head_act/gem"
    assert [fs["vectors"] for fs in detail["feature_sets"]] == [18]
    listing = _ok(client.get(f"/api/collections/{collection['id']}/images"))
    assert listing["total"] == 18 and listing["images"][0]["label"] == "class0"
    first = listing["images"][0]["id"]
    thumb = client.get(f"/api/images/{first}/thumbnail?size=64")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64
    full = client.get(f"/api/images/{first}/file")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert full.content == (root / "class0" / "img00.png").read_bytes()
    assert client.get(f"/api/images/{first}/thumbnail?size=7").status_code == 422
    assert client.get("/api/images/999999/file").status_code == 404
    assert client.get("/api/collections/77").status_code == 404


def test_search_by_id_marks_classes_and_scores_the_query(
        web: tuple[TestClient, Session, Path]) -> None:
    client, session, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    images = _ok(client.get(f"/api/collections/{cid}/images"))["images"]
    query = images[0]
    result = _ok(client.get(f"/api/collections/{cid}/search",
                            params={"image_id": query["id"], "k": 5}))
    assert len(result["hits"]) == 5 and result["query_label"] == "class0"
    assert all(hit["id"] != query["id"] for hit in result["hits"])
    assert all(hit["same_class"] == (hit["label"] == "class0") for hit in result["hits"])
    similarities = [hit["similarity"] for hit in result["hits"]]
    assert similarities == sorted(similarities, reverse=True)
    assert all(0 <= s <= 100 for s in similarities)
    assert 0 <= result["weighted_p15"] <= 100
    euclid = _ok(client.get(f"/api/collections/{cid}/search",
                            params={"image_id": query["id"], "metric": "euclidean"}))
    assert euclid["metric"] == "euclidean" and len(euclid["hits"]) == 15
    for params, status in [({"image_id": query["id"], "metric": "manhattan"}, 422),
                           ({"image_id": query["id"], "k": 0}, 422),
                           ({"image_id": query["id"], "k": 10_000}, 422),
                           ({"image_id": 424242}, 404),
                           ({"image_id": query["id"], "feature_set": "tiny@stem/avg"}, 404),
                           ({"image_id": query["id"], "feature_set": "nonsense"}, 422),
                           ({"image_id": "1; DROP TABLE images"}, 422)]:
        response = client.get(f"/api/collections/{cid}/search", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["detail"]


def test_search_by_upload(web: tuple[TestClient, Session, Path]) -> None:
    client, _, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    url = f"/api/collections/{cid}/search/upload"
    result = _ok(client.post(url, content=_jpeg(), params={"k": 4},
                             headers={"Content-Type": "image/jpeg"}))
    assert len(result["hits"]) == 4 and result["query_label"] is None
    assert all(hit["same_class"] is None for hit in result["hits"])
    assert result["embed_ms"] > 0
    too_big = client.post(url, content=b"\xff\xd8" + b"0" * 300_000)
    assert too_big.status_code == 413 and "larger than 200,000 bytes" in too_big.json()["detail"]
    for body in (b"<html><script>alert(1)</script></html>", b"GIF89a" + b"\x00" * 20,
                 _jpeg()[:200]):
        response = client.post(url, content=body, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 415, response.text
    assert client.post(url, content=b"").status_code == 422
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # tiny file, 400 MP
    response = client.post(url, content=bomb.getvalue())
    assert response.status_code == 415 and "too large" in response.json()["detail"]


class _ImageServer(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/redirect-inside":
            self.send_response(302)
            self.send_header("Location", "http://192.168.0.10/secret.png")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_search_by_url_and_hostile_urls(web: tuple[TestClient, Session, Path]) -> None:
    client, session, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    _ImageServer.body = _jpeg(seed=9)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"/api/collections/{cid}/search/url"
        port = httpd.server_address[1]
        result = _ok(client.post(url, json={"url": f"http://127.0.0.1:{port}/a.jpg", "k": 3}))
        assert len(result["hits"]) == 3
        refused = client.post(url, json={"url": f"http://127.0.0.1:{port}/redirect-inside"})
        assert refused.status_code == 422 and "192.168.0.10" in refused.json()["detail"]
    finally:
        httpd.shutdown()
    # With the default policy (what `semsearch serve` uses), none of these are fetched.
    strict = create_app(session.config, session=session, allowed_hosts=("testserver",))
    with TestClient(strict) as plain:
        for target in ("http://127.0.0.1/x.jpg", "http://10.0.0.8/x.jpg",
                       "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                       "http://[::1]:8000/x.jpg", "http://localhost/x.jpg",
                       "ftp://example.com/x.jpg"):
            response = plain.post(f"/api/collections/{cid}/search/url", json={"url": target})
            assert response.status_code == 422, target
            assert "refusing" in response.json()["detail"] or "only http" in \
                response.json()["detail"]
        assert plain.post(f"/api/collections/{cid}/search/url",
                          json={"url": "x" * 5000}).status_code == 422
        assert plain.post(f"/api/collections/{cid}/search/url",
                          content=b"{not json").status_code == 422


@pytest.mark.parametrize("path", [
    "/api/images/..%2F..%2Fetc%2Fpasswd/file", "/static/../../../etc/passwd",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/api/images/1%00/file",
    "/static/%2e%2e/%2e%2e/setup.py", "/api/collections/1/../../../etc/passwd",
])
def test_paths_never_reach_files(web: tuple[TestClient, Session, Path], path: str) -> None:
    client, _, _ = web
    response = client.get(path)
    assert response.status_code in (404, 422), path
    assert b"root:" not in response.content


def test_models_options_docs_and_page(web: tuple[TestClient, Session, Path]) -> None:
    client, _, _ = web
    models = _ok(client.get("/api/models"))
    assert [m["name"] for m in models][:1] == ["tiny"]
    layers = _ok(client.get("/api/models/tiny/layers"))
    assert [layer["name"] for layer in layers][:2] == ["stem", "stem_act"]
    assert client.get("/api/models/resnet9000/layers").status_code == 404
    options = _ok(client.get("/api/options"))
    assert "cosine" in options["metrics"] and "gem" in options["poolings"]
    # No /docs or /redoc pages: they load scripts from a CDN into this origin.
    assert client.get("/docs").status_code == client.get("/redoc").status_code == 404
    schema = _ok(client.get("/openapi.json"))
    assert "/api/collections/{cid}/search" in schema["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "ConvNet Playground" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_evaluations_and_map(web: tuple[TestClient, Session, Path]) -> None:
    client, session, root = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    assert _ok(client.get(f"/api/collections/{cid}/evaluations")) == []
    run_sweep(session, str(root), models=["tiny"], layers=["block", "head"],
              poolings=["avg"], metrics=["cosine", "euclidean"])
    (listed,) = _ok(client.get(f"/api/collections/{cid}/evaluations"))
    assert listed["settings"]["layers"] == {"tiny": ["block", "head"]}
    image_id = _ok(client.get(f"/api/collections/{cid}/images"))["images"][0]["id"]
    run = _ok(client.get(f"/api/evaluations/{listed['id']}", params={"image_id": image_id}))
    assert len(run["rows"]) == 4
    assert {(r["layer"], r["metric"]) for r in run["rows"]} == {
        ("block", "cosine"), ("block", "euclidean"), ("head", "cosine"), ("head", "euclidean")}
    assert all(0 <= r["image_score"] <= 100 for r in run["rows"])
    assert client.get("/api/evaluations/999").status_code == 404

    made = _ok(client.get(f"/api/collections/{cid}/map"))
    assert len(made["ids"]) == len(made["x"]) == len(made["labels"]) == 18
    assert all(0 <= v <= 1 for v in made["x"] + made["y"])
    again = _ok(client.get(f"/api/collections/{cid}/map"))
    assert again == made  # cached, not recomputed with other coordinates
    other = _ok(client.get(f"/api/collections/{cid}/map",
                           params={"feature_set": "tiny@block/avg"}))
    assert other["feature_set"] == "tiny@block/avg" and other["x"] != made["x"]


def test_other_hosts_and_other_sites_are_refused(web: tuple[TestClient, Session, Path]) -> None:
    client, session, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    # A page that points its own name at 127.0.0.1 (DNS rebinding) names itself as Host.
    assert client.get("/api/collections", headers={"Host": "rebind.example:8000"}
                      ).status_code == 400
    local = create_app(session.config, session=session)
    with TestClient(local, base_url="http://127.0.0.1:8000") as same:
        assert same.get("/api/collections").status_code == 200
        upload = f"/api/collections/{cid}/search/upload"
        for headers in ({"Origin": "https://evil.example"},
                        {"Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://127.0.0.1:9999"}):
            response = same.post(upload, content=_jpeg(), headers=headers)
            assert response.status_code == 403, headers
            assert "another site" in response.json()["detail"]
        ok = same.post(upload, content=_jpeg(), headers={"Origin": "http://127.0.0.1:8000",
                                                         "Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 200


def test_deleted_files_leave_the_views(web: tuple[TestClient, Session, Path]) -> None:
    client, session, root = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    gone = root / "class1" / "img01.png"
    record = session.store.image_by_path(str(gone))
    assert record is not None
    gone.unlink()
    listing = _ok(client.get(f"/api/collections/{cid}/images"))
    assert listing["total"] == 17 and record.id not in [i["id"] for i in listing["images"]]
    assert client.get(f"/api/images/{record.id}/file").status_code == 404
    assert client.get(f"/api/images/{record.id}/thumbnail").status_code == 404
    made = _ok(client.get(f"/api/collections/{cid}/map"))
    assert record.id not in made["ids"] and len(made["ids"]) == 17


def test_a_feature_set_without_vectors_here_is_a_clear_404(
        web: tuple[TestClient, Session, Path], tmp_path: Path) -> None:
    client, session, root = web
    other = labeled_folder(tmp_path / "other", 4, classes=2)
    session.index(str(other), feature_set=FeatureSet("tiny", "block", "avg"))
    cid = _ok(client.get("/api/collections"))[0]["id"]
    image_id = _ok(client.get(f"/api/collections/{cid}/images"))["images"][0]["id"]
    response = client.get(f"/api/collections/{cid}/search",
                          params={"image_id": image_id, "feature_set": "tiny@block/avg"})
    assert response.status_code == 404 and "has no tiny@block/avg vectors" in \
        response.json()["detail"]


def test_the_served_folder_is_the_page_s_default_collection(
        web: tuple[TestClient, Session, Path], tmp_path: Path) -> None:
    client, session, root = web
    assert _ok(client.get("/api/options"))["default_collection"] is None  # the oldest
    other = labeled_folder(tmp_path / "other", 6)
    session.index(str(other))
    ids = {c["root"]: c["id"] for c in _ok(client.get("/api/collections"))}
    for served, expected in ((other, ids[str(other)]), (root, ids[str(root)]),
                             (other / "class1", ids[str(other)]), (tmp_path / "elsewhere", None)):
        app = create_app(session.config, session=session, allowed_hosts=("testserver",),
                         default_collection=str(served))
        with TestClient(app) as served_client:
            options = _ok(served_client.get("/api/options"))
        assert options["default_collection"] == expected, served


def test_serve_path_hands_its_collection_to_the_page(
        tmp_path: Path, cache_dir: Path, tiny_registry: Any, no_config_file: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    import uvicorn

    from semsearch import cli
    from semsearch.cli import arguments

    db = tmp_path / "served.db"
    first, second = labeled_folder(tmp_path / "first", 6), labeled_folder(tmp_path / "second", 6)
    with Session(resolve_tiny(db, cache_dir), registry=tiny_registry) as session:
        session.index(str(first))  # the oldest collection, which the page used to open
    monkeypatch.setattr(arguments, "open_session", lambda config, create=False: Session(
        config, registry=tiny_registry, create=create))
    seen: dict[str, Any] = {}

    def run(app: Any, **_: Any) -> None:  # asks the app what the page would, while it serves
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            seen["ids"] = {c["root"]: c["id"] for c in _ok(client.get("/api/collections"))}
            seen["default"] = _ok(client.get("/api/options"))["default_collection"]

    monkeypatch.setattr(uvicorn, "run", run)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli.main(["serve", str(second), "--model", "tiny", "--db", str(db), "--cache-dir",
                     str(cache_dir), "--port", str(port), "--quiet"]) == 0
    capsys.readouterr()
    assert seen["ids"][str(first)] < seen["ids"][str(second)]
    assert seen["default"] == seen["ids"][str(second)]


def resolve_tiny(db: Path, cache_dir: Path) -> Any:
    from semsearch.config import resolve

    return resolve({"db": str(db), "cache_dir": str(cache_dir), "model": "tiny"}, env={})


def test_why_by_an_uploaded_image_or_a_url(web: tuple[TestClient, Session, Path]) -> None:
    client, session, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    result = _ok(client.get(f"/api/collections/{cid}/images"))["images"][4]["id"]
    params = {"result": result, "feature_set": "tiny@head_act/gem", "classifier": "tiny"}
    why = _ok(client.post("/api/why/upload", content=_jpeg(), params=params,
                          headers={"Content-Type": "image/jpeg"}))
    assert -1 <= why["similarity"] <= 1 and why["query_png"].startswith("data:image/png")
    assert len(why["query_classes"]) == 5
    assert why["query_cam_png"].startswith("data:image/png;base64,")
    plain = _ok(client.post("/api/why/upload", content=_jpeg(), params={
        "result": result, "feature_set": "tiny@head_act/gem"}))
    assert plain["query_classes"] is None and plain["query_cam_png"] is None
    assert plain["similarity"] == pytest.approx(why["similarity"])
    # The search's own caps and refusals.
    too_big = client.post("/api/why/upload", content=b"\xff\xd8" + b"0" * 300_000, params=params)
    assert too_big.status_code == 413
    assert client.post("/api/why/upload", content=b"", params=params).status_code == 422
    assert client.post("/api/why/upload", content=b"<html>", params=params).status_code == 415
    for bad, status in (({"feature_set": "onnx:/etc/passwd@x/gem"}, 404),
                        ({"classifier": "onnx:/etc/passwd"}, 404), ({"result": 999999}, 404)):
        response = client.post("/api/why/upload", content=_jpeg(), params={**params, **bad})
        assert response.status_code == status, (bad, response.text)
    refused = client.post("/api/why/url", json={"url": "http://169.254.169.254/x.png", **params})
    assert refused.status_code == 422 and "refusing" in refused.json()["detail"]
    local = create_app(session.config, session=session)
    with TestClient(local, base_url="http://127.0.0.1:8000") as same:
        response = same.post("/api/why/upload", content=_jpeg(), params=params,
                             headers={"Origin": "https://evil.example"})
        assert response.status_code == 403


def test_why_by_url_fetches_the_image_again(web: tuple[TestClient, Session, Path]) -> None:
    client, _, _ = web
    cid = _ok(client.get("/api/collections"))[0]["id"]
    result = _ok(client.get(f"/api/collections/{cid}/images"))["images"][2]["id"]
    _ImageServer.body = _jpeg(seed=9)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/photo.jpg"
        why = _ok(client.post("/api/why/url", json={
            "url": url, "result": result, "feature_set": "tiny@head_act/gem"}))
        upload = _ok(client.post("/api/why/upload", content=_ImageServer.body, params={
            "result": result, "feature_set": "tiny@head_act/gem"}))
        assert why["similarity"] == pytest.approx(upload["similarity"])
    finally:
        server.shutdown()
