"""A folder reached through a symbolic link (`~/photos` linking to `/data/photos`): indexing
stores real paths, and every path a person gives (a query file, a folder to search within,
compare or remove) is resolved the same way, so the link finds what was indexed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.conftest import labeled_folder

from semsearch.cli import main
from semsearch.evaluate.sweep import run_sweep
from semsearch.query.service import KnownImageQuery
from semsearch.session import Session


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """A labeled folder of 9 images in 3 classes: (its path through a link to its parent
    folder, its real path)."""
    real = labeled_folder(tmp_path / "disk" / "photos", 9)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "data").symlink_to(tmp_path / "disk", target_is_directory=True)
    return tmp_path / "home" / "data" / "photos", real


def test_search_compare_and_remove_through_a_link(tiny_session: Session,
                                                  linked: tuple[Path, Path]) -> None:
    link, real = linked
    session = tiny_session
    report = session.index(str(link))
    assert report.root == str(real) and report.embedded == 9
    stored = session.store.image_by_path(str(real / "class0" / "img00.png"))
    assert stored is not None
    # A query file named through the link is the indexed image, not an outside one.
    service = session.search_service()
    query = service.resolve(str(link / "class0" / "img00.png"))
    assert query == KnownImageQuery(stored.id)
    record = session.indexed_feature_set(None)
    within = service.search(query, feature_set=record, metric=session.metric(), k=9,
                            within=str(link / "class1"))
    assert len(within.hits) == 3
    assert all(h.path.startswith(str(real / "class1") + os.sep) for h in within.hits)
    # A comparison of the folder's images finds them indexed already, under their real paths.
    fs = session.feature_set()
    result = run_sweep(session, str(link), models=[fs.model], layers=[fs.layer],
                       poolings=[fs.pooling], metrics=["cosine"], k=2)
    assert result.root == str(real) and result.reports[0].unchanged == 9
    assert [s.id for s in session.store.sweeps(str(real))] == [result.sweep.id]
    assert session.remove(str(link / "class2")) == 3
    assert sorted(session.store.images_under(str(real))) == sorted(
        str(p) for p in real.glob("class[01]/*.png"))


def test_the_command_line_removes_through_a_link(tiny_session: Session,
                                                 linked: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str],
                                                 no_config_file: None) -> None:
    link, real = linked
    tiny_session.index(str(link))
    db = str(tiny_session.config.db)
    assert main(["remove", str(link / "class0"), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"path": str(real / "class0"),
                                                   "removed": 3}
    assert tiny_session.store.count_images() == 6


def test_the_web_app_finds_a_collection_indexed_through_a_link(
        tiny_session: Session, linked: tuple[Path, Path]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from semsearch.web.app import create_app

    link, real = linked
    tiny_session.index(str(link))
    app = create_app(tiny_session.config, session=tiny_session, allowed_hosts=("testserver",))
    with TestClient(app) as client:
        (collection,) = client.get("/api/collections").json()
        assert collection["root"] == str(real) and collection["images"] == 9
        cid = collection["id"]
        listing = client.get(f"/api/collections/{cid}/images").json()
        assert listing["total"] == 9
        first = listing["images"][0]["id"]
        found = client.get(f"/api/collections/{cid}/search", params={"image_id": first, "k": 3})
        assert found.status_code == 200, found.text
        assert len(found.json()["hits"]) == 3
        # Its files are served: what was stored is the real path, not the link.
        assert client.get(f"/api/images/{first}/file").status_code == 200
