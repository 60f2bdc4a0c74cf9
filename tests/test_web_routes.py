"""The web edge's parts alone: /openapi.json describes every JSON answer, a route module
mounts and answers on its own with only the shared state, and the serving policy (token,
hosts, address) that `semsearch serve` takes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import labeled_folder

from semsearch.session import Session

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from semsearch.web import errors  # noqa: E402
from semsearch.web.app import create_app  # noqa: E402
from semsearch.web.deps import WebState, attach  # noqa: E402
from semsearch.web.routes import collections, search  # noqa: E402
from semsearch.web.security import serving  # noqa: E402


@pytest.fixture
def indexed(tiny_session: Session, tmp_path: Path) -> Session:
    tiny_session.index(str(labeled_folder(tmp_path / "photos", 6)))
    return tiny_session


def _described(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """Gives whether a JSON schema says what the body holds: a model with properties, a list
    of such, or a plain type; not {} (anything)."""
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[-1]]
        return bool(target.get("properties"))
    if schema.get("type") == "array":
        return _described(schema.get("items", {}), components)
    if schema.get("type") == "object":  # a dict of anything is no description
        return bool(schema.get("properties"))
    return bool(schema.get("type"))


def test_every_json_route_describes_its_answer(indexed: Session) -> None:
    client = TestClient(create_app(indexed.config, session=indexed,
                                   allowed_hosts=("testserver",)))
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    json_routes, undescribed = 0, []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            content = operation["responses"]["200"].get("content", {})
            assert content, f"{method} {path} says nothing of its answer"
            if "application/json" not in content:
                assert all(kind.startswith("image/") for kind in content), (path, content)
                continue
            json_routes += 1
            if not _described(content["application/json"].get("schema", {}), components):
                undescribed.append(f"{method.upper()} {path}")
    assert not undescribed, undescribed
    assert json_routes >= 18
    # One answer for every search, and the URL search's body is described too.
    refs = {spec["paths"][p][m]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"] for p, m in [("/api/collections/{cid}/search", "get"),
                                  ("/api/collections/{cid}/search/upload", "post"),
                                  ("/api/collections/{cid}/search/url", "post"),
                                  ("/api/collections/{cid}/search/text", "get")]}
    assert refs == {"#/components/schemas/SearchResponse"}
    assert components["UrlSearch"]["properties"]["url"]["maxLength"] == 4096


def test_a_route_module_mounts_alone(indexed: Session) -> None:
    app = FastAPI()
    attach(app, WebState(indexed, indexed.config))
    errors.add_handlers(app)
    app.include_router(collections.router)
    app.include_router(search.router)
    client = TestClient(app)
    (listed,) = client.get("/api/collections").json()
    assert listed["images"] == 6 and listed["labeled"] is True
    image_id = client.get(f"/api/collections/{listed['id']}/images").json()["images"][0]["id"]
    found = client.get(f"/api/collections/{listed['id']}/search",
                       params={"image_id": image_id, "k": 3})
    assert found.status_code == 200 and len(found.json()["hits"]) == 3
    missing = client.get("/api/collections/77")
    assert missing.status_code == 404 and "no collection with id 77" in missing.json()["detail"]
    assert client.get(f"/api/images/{image_id}").status_code == 404  # not mounted here


def test_serving_beyond_loopback_needs_a_token(indexed: Session) -> None:
    local = serving(indexed.config, 8000)
    assert local.config.token is None and not local.token_made_up
    assert local.address == "http://127.0.0.1:8000/"
    assert set(local.allowed_hosts) == {"127.0.0.1", "localhost"}
    other = serving(replace(indexed.config, host="::1"), 9000)
    assert other.config.token is None and other.address == "http://[::1]:9000/"
    assert "[::1]" in other.allowed_hosts and "::1" in other.allowed_hosts
    wide = serving(replace(indexed.config, host="0.0.0.0"), 8000)
    assert wide.token_made_up and wide.everywhere and len(wide.config.token or "") >= 24
    assert wide.address.endswith(f":8000/?token={wide.config.token}")
    given = serving(replace(indexed.config, host="10.0.0.5", token="a-token-of-my-own-0123"),
                    8000)
    assert not given.token_made_up and given.config.token == "a-token-of-my-own-0123"
    assert given.address == "http://10.0.0.5:8000/?token=<your token>"
