"""Search by words: query checks, the ConSE mix, and (with the bundled sentence model and real
weights) text search, tags, the CLI and the API on a real dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset

from semsearch.errors import QueryError
from semsearch.query.text_model import CLASSES, check_query, class_probabilities, conse, tags_for


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_queries_are_refused(text: str) -> None:
    with pytest.raises(QueryError, match="empty"):
        check_query(text)


def test_long_queries_are_refused_and_spaces_folded() -> None:
    with pytest.raises(QueryError, match="too long"):
        check_query("word " * 41)
    with pytest.raises(QueryError, match="too long"):
        check_query("x" * 301)
    assert check_query("  cat   on a\\tsofa ".replace("\\t", "\t")) == "cat on a sofa"


def test_conse_mixes_the_top_classes_by_probability() -> None:
    rng = np.random.default_rng(0)
    classes = rng.normal(size=(CLASSES, 8)).astype(np.float32)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    p = np.zeros((2, CLASSES), np.float32)
    p[0, [3, 7, 9]] = [0.6, 0.3, 0.1]
    p[1, 5] = 1.0
    vectors = conse(p, classes, top=2)
    expected = 0.6 * classes[3] + 0.3 * classes[7]  # class 9 is third: left out
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(vectors[1], classes[5], rtol=1e-5)
    names = [[f"word{i}"] for i in range(CLASSES)]
    tags = tags_for(vectors[1], classes, names, k=3)
    assert tags[0].word == "word5" and tags[0].score == pytest.approx(1.0)


def test_composite_probabilities_are_averaged() -> None:
    a = np.zeros(CLASSES, np.float32)
    a[1] = 1.0
    b = np.zeros(CLASSES, np.float32)
    b[1], b[2] = 0.6, 0.8  # a unit-length part, as a composite stores it
    joined = np.concatenate([a, b])[None] / np.sqrt(2)
    mixed = class_probabilities(joined)[0]
    assert mixed[1] == pytest.approx((1 + 0.6 / 1.4) / 2)
    assert mixed[2] == pytest.approx((0.8 / 1.4) / 2) and mixed.sum() == pytest.approx(1)
    with pytest.raises(QueryError, match="not class probabilities"):
        class_probabilities(np.ones((1, 10), np.float32))


@pytest.fixture(scope="module")
def text_catalogue(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):  # type: ignore[no-untyped-def]
    from semsearch.config import resolve
    from semsearch.query.words import index_text
    from semsearch.session import Session

    root = dataset("iconic200")
    tmp = tmp_path_factory.mktemp("text")
    config = resolve({"db": str(tmp / "t.db"), "cache_dir": str(cache_dir), "model": "lite0",
                      "expand_k": 0}, env={})
    with Session(config) as session:
        session.index(str(root))
        index_text(session, str(root))
        yield session, root


@pytest.mark.real
def test_words_find_their_images(text_catalogue) -> None:  # type: ignore[no-untyped-def]
    from semsearch.query.words import image_tags, search_text

    session, root = text_catalogue
    bananas = search_text(session, "banana", k=10).hits
    assert sum(hit.image.label == "banana" for hit in bananas) >= 8
    phrase = search_text(session, "a big green tractor on a farm field", k=10).hits
    assert sum(hit.image.label == "tractor" for hit in phrase) >= 6
    odd = search_text(session, "zxqvbn blorft", k=5)  # unknown words: still an answer
    assert len(odd.hits) == 5
    record = session.store.image_by_path(str(root / "banana" / "191.jpg"))
    tags = image_tags(session, record.id)
    assert tags[0].word == "banana" and len(tags) == 5
    with pytest.raises(QueryError, match="empty"):
        search_text(session, "   ")


@pytest.mark.real
def test_cli_and_api_take_words(text_catalogue, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                no_config_file: None) -> None:
    from fastapi.testclient import TestClient

    from semsearch.cli import main
    from semsearch.web.app import create_app

    session, root = text_catalogue
    common = ["--db", str(session.store.path), "--cache-dir", str(session.cache_dir),
              "--model", "lite0", "--json"]
    assert main(["search", "yellow banana", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "text" and out["hits"][0]["label"] == "banana"
    assert main(["search", "", "--text", *common]) == 1
    assert "empty" in capsys.readouterr().err
    tractor = sorted((root / "tractor").iterdir())[0]
    assert main(["tags", str(tractor), *common]) == 0
    assert "tractor" in capsys.readouterr().out
    assert main(["tags", str(tractor), "-n", "0", *common]) == 1
    assert "-n must be from 1 to 100" in capsys.readouterr().err
    # The class embeddings were made once and kept beside the ONNX graphs.
    from semsearch.query.text_model import TextModel

    assert list((session.cache_dir / "text").glob("classes-*.npy"))
    again = TextModel(session.cache_dir)
    np.testing.assert_allclose(again.classes(), session.text_model().classes(), atol=1e-6)
    client = TestClient(create_app(session.config, session=session,
                                   allowed_hosts=("testserver",)))
    cid = session.store.collections()[0][0]
    result = client.get(f"/api/collections/{cid}/search/text", params={"q": "banana", "k": 5})
    assert result.status_code == 200 and result.json()["hits"][0]["label"] == "banana"
    assert client.get(f"/api/collections/{cid}/search/text", params={"q": " "}).status_code == 422
    assert client.get(f"/api/collections/{cid}/search/text",
                      params={"q": "w " * 100}).status_code == 422
    image_id = result.json()["hits"][0]["id"]
    assert client.get(f"/api/images/{image_id}/tags").json()[0]["word"] == "banana"


def test_cli_tells_words_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch.cli import _is_text

    (tmp_path / "banana").mkdir()
    (tmp_path / "photo.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert _is_text("banana")  # a folder of that name does not make it a file
    assert _is_text("AC/DC") and _is_text("red sports car")
    assert not _is_text("photo.png") and not _is_text("typo.jpg")  # files, or meant to be
    assert not _is_text("2021") and not _is_text("id:7")


def test_captions_csv_edge_cases(tmp_path: Path) -> None:
    from semsearch.errors import ConfigError
    from semsearch.evaluate.adapt import read_captions

    root = tmp_path / "photos"
    root.mkdir()
    (tmp_path / "bom.csv").write_bytes("\ufeffa.png,a cat\nb.png,a dog\n".encode())
    assert len(read_captions(str(tmp_path / "bom.csv"), str(root))) == 2  # BOM, no header
    (tmp_path / "twice.csv").write_text("a.png,a cat\na.png,another cat\n")
    with pytest.raises(ConfigError, match="line 2: a.png already has a caption"):
        read_captions(str(tmp_path / "twice.csv"), str(root))
    (tmp_path / "outside.csv").write_text("../elsewhere.png,a cat\n")
    with pytest.raises(ConfigError, match="1 row.* outside"):
        read_captions(str(tmp_path / "outside.csv"), str(root))
