"""The web API under attack, in-process: every request of tests/hostile.py is refused with
the right status and leaks nothing; the token for serving beyond this machine; and a real
`semsearch serve --host 0.0.0.0` that makes up its token and holds to it."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import labeled_folder, make_image
from tests.hostile import Hostile, hostile_requests, run_hostile

from semsearch.session import Session
from semsearch.web.fetch import FetchPolicy

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semsearch.web.app import create_app  # noqa: E402
from semsearch.web.security import BODY_MAX_BYTES, TOKEN_COOKIE  # noqa: E402

UPLOAD_MAX = 200_000
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def served(tiny_session: Session, tmp_path: Path) -> Iterator[tuple[Session, int, int]]:
    root = labeled_folder(tmp_path / "photos", 9)
    session = Session(replace(tiny_session.config, expand_k=0), registry=tiny_session.registry,
                      store=tiny_session.store)
    session.index(str(root))
    (collection,) = session.store.collections()
    image_id = next(iter(session.store.images_under(str(root)).values())).id
    yield session, collection[0], image_id


def _client_send(client: TestClient) -> Any:
    def send(method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, bytes]:
        response = client.request(method, path, headers=headers, content=body)
        return response.status_code, response.content
    return send


def _cases(served_ids: tuple[int, int]) -> list[Hostile]:
    return hostile_requests(*served_ids, upload_max=UPLOAD_MAX)


def test_every_hostile_request_is_refused(served: tuple[Session, int, int]) -> None:
    session, cid, image_id = served
    app = create_app(session.config, session=session, upload_max_bytes=UPLOAD_MAX,
                     allowed_hosts=("testserver",))
    with TestClient(app) as client:
        outcomes = run_hostile(_client_send(client), _cases((cid, image_id)))
        failed = [f"{o.hostile.name}: {o.why}" for o in outcomes if not o.refused]
        assert not failed, "\n".join(failed)
        assert len(outcomes) > 60
        # ...and the server still serves ordinary requests afterwards.
        assert client.get(f"/api/collections/{cid}/search",
                          params={"image_id": image_id}).status_code == 200


def test_model_files_are_no_oracle(served: tuple[Session, int, int], tmp_path: Path) -> None:
    # Whether the named file exists, is readable or is a model must not change the answer.
    session, _, image_id = served
    real = tmp_path / "model.onnx"
    real.write_bytes(b"\x08\x07ONNX")
    app = create_app(session.config, session=session, allowed_hosts=("testserver",))
    with TestClient(app) as client:
        answers = set()
        for target in (real, tmp_path / "absent.onnx", Path("/etc/passwd")):
            response = client.get(f"/api/images/{image_id}/classes",
                                  params={"model": f"onnx:{target}"})
            answers.add((response.status_code,
                         response.json()["detail"].replace(str(target), "<name>")))
        (status, detail), = answers
        assert status == 404 and "unknown model" in detail


def test_a_file_swapped_for_a_link_is_not_served(served: tuple[Session, int, int],
                                                 tmp_path: Path) -> None:
    session, _, image_id = served
    path = Path(session.store.image(image_id).path)
    secret = make_image(tmp_path / "private" / "secret.png", seed=99)
    path.unlink()
    path.symlink_to(secret)
    app = create_app(session.config, session=session, allowed_hosts=("testserver",))
    with TestClient(app) as client:
        for route in (f"/api/images/{image_id}/file", f"/api/images/{image_id}/thumbnail",
                      f"/api/images/{image_id}/classes?model=tiny"):
            response = client.get(route)
            assert response.status_code == 404, route
            assert "replaced by a link" in response.json()["detail"]


def test_a_body_cap_on_every_route_but_upload(served: tuple[Session, int, int]) -> None:
    session, cid, _ = served
    app = create_app(session.config, session=session, allowed_hosts=("testserver",))
    with TestClient(app) as client:
        url = f"/api/collections/{cid}/search/url"
        big = b'{"url": "http://x/%s"}' % (b"a" * BODY_MAX_BYTES)
        response = client.post(url, content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and len(response.content) < 200
        chunks = iter([b'{"url": "http://x/', b"a" * BODY_MAX_BYTES, b'"}'])
        assert client.post(url, content=chunks).status_code == 413
        long_fs = client.post(url, json={"url": "http://x/a.jpg", "feature_set": "x" * 2000})
        assert long_fs.status_code == 422


class _SlowImage(BaseHTTPRequestHandler):
    release = threading.Event()
    arrived = threading.Semaphore(0)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.arrived.release()
        self.release.wait(60)
        self.send_response(404)
        self.end_headers()


def test_slow_url_searches_cannot_take_every_worker(served: tuple[Session, int, int]) -> None:
    session, cid, image_id = served
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowImage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    import ipaddress

    policy = FetchPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))
    app = create_app(session.config, session=session, fetch_policy=policy,
                     allowed_hosts=("testserver",))
    slow = f"http://127.0.0.1:{httpd.server_address[1]}/slow.jpg"
    try:
        with TestClient(app) as client:
            statuses: list[int] = []
            threads = [threading.Thread(target=lambda: statuses.append(client.post(
                f"/api/collections/{cid}/search/url", json={"url": slow}).status_code))
                for _ in range(4)]
            for t in threads:
                t.start()
            for _ in range(4):  # until the four fetches all wait on the slow server
                assert _SlowImage.arrived.acquire(timeout=60)
            busy = client.post(f"/api/collections/{cid}/search/url", json={"url": slow})
            assert busy.status_code == 503 and busy.headers["retry-after"]
            # Other searches are still answered meanwhile.
            assert client.get(f"/api/collections/{cid}/search",
                              params={"image_id": image_id}).status_code == 200
            _SlowImage.release.set()
            for t in threads:
                t.join(30)
            assert statuses == [422] * 4
    finally:
        _SlowImage.release.set()
        httpd.shutdown()


def test_a_token_guards_everything_but_the_static_files(
        served: tuple[Session, int, int]) -> None:
    session, cid, _ = served
    app = create_app(replace(session.config, token=TOKEN), session=session)
    # With a token, any Host is accepted: the token, not the name, is what is checked.
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        for path in ("/", "/api/collections", f"/api/collections/{cid}", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert "needs its token" in client.get("/").text  # a page for a person
        assert client.get("/static/app.js").status_code == 200
        for wrong in ("", "Bearer", "Bearer " + TOKEN[:-1], "Basic " + TOKEN, TOKEN):
            assert client.get("/api/collections",
                              headers={"Authorization": wrong}).status_code == 401, wrong
        good = {"Authorization": "Bearer " + TOKEN}
        assert client.get("/api/collections", headers=good).status_code == 200
        # The address does not carry the token to API routes (it would end up in logs).
        assert client.get("/api/collections", params={"token": TOKEN}).status_code == 401
        assert client.get("/", params={"token": "nope-nope-nope-nope"}).status_code == 401
        # A cookie left by an earlier server does not hide the token in the address.
        client.cookies.set(TOKEN_COOKIE, "an-old-servers-token-0000")
        assert client.get("/api/collections").status_code == 401
        opened = client.get("/", params={"token": TOKEN}, follow_redirects=False)
        # A page that sets the cookie and then opens / itself: after a link followed from
        # another site, a redirect's request would go without a SameSite=Strict cookie.
        assert opened.status_code == 200 and 'content="0;url=/"' in opened.text
        assert opened.headers["cache-control"] == "no-store"
        cookie = opened.headers["set-cookie"]
        assert f"{TOKEN_COOKIE}={TOKEN}" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        client.cookies.set(TOKEN_COOKIE, TOKEN)
        page = client.get("/")
        assert page.status_code == 200 and "ConvNet Playground" in page.text
        assert client.get("/api/collections").status_code == 200
        # The token does not lift the other guards.
        cross = client.post(f"/api/collections/{cid}/search/upload", content=b"x",
                            headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, headers: dict[str, str] | None = None,
         host: str = "127.0.0.1") -> int:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


def _serving(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], int, str]:
    """Starts a real `semsearch serve` of a small collection with flags; gives it, its port
    and what it printed before answering."""
    from tests.faults import CLI, export_tiny_onnx, tiny_collection

    root = tmp_path / "photos"
    for i in range(4):
        make_image(root / f"c{i % 2}" / f"{i}.png", seed=i)
    collection = tiny_collection(root, tmp_path / "cat.db",
                                 export_tiny_onnx(tmp_path / "tiny.onnx"))
    port = _free_port()
    server = subprocess.Popen([*CLI, "serve", str(root), *collection.flags(), *flags,
                               "--port", str(port), "--quiet"],
                              env=collection.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert server.stdout is not None
    lines = []
    while not any("ConvNet Playground:" in line for line in lines):
        line = server.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(port, "/static/app.js", host="127.0.0.2" if "127.0.0.2" in flags else
                 "127.0.0.1")
            return server, port, "".join(lines)
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "".join(lines)
            time.sleep(0.2)


@pytest.mark.real
def test_serving_beyond_loopback_makes_up_a_token(tmp_path: Path) -> None:
    server, port, printed = _serving(tmp_path, "--host", "0.0.0.0")
    try:
        token = re.search(r"\?token=(\S+)", printed).group(1)  # type: ignore[union-attr]
        assert len(token) >= 24 and socket.gethostname() in printed
        assert _get(port, "/api/collections") == 401
        bearer = {"Authorization": f"Bearer {token}"}
        assert _get(port, "/api/collections", bearer) == 200
        assert _get(port, "/api/collections", {**bearer, "Host": "photos.lan:8000"}) == 200
        assert _get(port, f"/?token={token}") == 200
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.real
def test_another_loopback_address_is_served_without_a_token(tmp_path: Path) -> None:
    server, port, printed = _serving(tmp_path, "--host", "127.0.0.2")
    try:
        assert f"http://127.0.0.2:{port}/" in printed and "token" not in printed
        assert _get(port, "/api/collections", host="127.0.0.2") == 200
        assert _get(port, "/api/collections", {"Host": "rebind.example"},
                    host="127.0.0.2") == 400
    finally:
        server.terminate()
        server.wait(30)
