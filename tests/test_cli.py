"""The command line: user mistakes give one clear line and a non-zero exit, never a
traceback; the real model indexes and searches a few real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.conftest import dataset, make_image

from semsearch.cli import main
from semsearch.store import Store


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSEARCH_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("SEMSEARCH_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("SEMSEARCH_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    Store.open(tmp_path / "cli.db").close()  # an empty catalogue, as after a first install


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "whatever.jpg"], "neither an existing image file nor an image id"),
        (["index", "/no/such/folder"], "no such file or folder"),
        (["index", ".", "--model", "resnet50"], "available: lite0, lite1, lite2"),
        (["index", ".", "--pool", "median"], "choose one of avg, max, gem, flat"),
        (["index", ".", "--metric", "manhattan"], "choose one of cosine"),
        (["index", ".", "--batch-size", "0"], "--batch-size"),
        (["search", "id:5"], "no image with id 5"),
        (["layers", "vgg16"], "unknown model 'vgg16'"),
        (["remove", "/nothing/here"], "nothing is indexed at /nothing/here"),
        (["remove", ""], "PATH must not be empty"),
        (["index", " "], "PATH must not be empty"),
        (["info", "--db", ""], "--db"),
        (["search", "x.jpg", "-k", "0"], "positive"),
        (["search", "x.jpg", "--minkowski-p", "inf"], "finite"),
        (["info", "--db", "/"], "is a folder"),
        (["info", "--db", "/no/such/catalogue.db"], "no catalogue at /no/such/catalogue.db"),
        (["index", ".", "--pool", "gem99"], "gem takes an exponent from 1 to 16"),
        (["serve", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1 port 8000"),
        (["serve", "--port", "70000"], "--port must be from 1 to 65535"),
        (["serve", "--token", "short"], "at least 16 printable ASCII characters"),
        (["serve", "--host", ""], "must not be empty"),
    ],
)
def test_mistakes_give_one_clear_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                      message: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 1
    assert err.startswith("semsearch: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_empty_catalogue(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = make_image(tmp_path / "q.png", seed=1)
    code, _, err = _run(capsys, "search", str(image))
    assert code == 1 and "run `semsearch index FOLDER` first" in err
    code, out, _ = _run(capsys, "info", "--json")
    assert code == 0 and json.loads(out)["images"] == 0


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["search"])
    assert info.value.code == 2


@pytest.mark.real
def test_index_search_info_remove(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = dataset("iconic200")
    folder = tmp_path / "photos"
    for cls in ("banana", "tractor"):
        (folder / cls).mkdir(parents=True)
        for image in sorted((source / cls).glob("*.jpg"))[:4]:
            shutil.copy(image, folder / cls / image.name)
    (folder / "banana" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")

    code, out, _ = _run(capsys, "index", str(folder), "--json")
    report = json.loads(out)
    assert code == 0 and report["embedded"] == 8
    assert [Path(f["path"]).name for f in report["failed"]] == ["broken.jpg"]

    code, out, _ = _run(capsys, "index", str(folder))
    assert code == 0 and "unchanged 8" in out and "broken.jpg" in out

    query = sorted((folder / "banana").glob("*.jpg"))[0]
    code, out, _ = _run(capsys, "search", str(query), "-k", "3", "--json")
    result = json.loads(out)
    assert code == 0 and len(result["hits"]) == 3
    assert all(hit["label"] == "banana" for hit in result["hits"])
    assert str(query) not in [hit["path"] for hit in result["hits"]]

    code, out, _ = _run(capsys, "search", str(query), "-k", "2")
    assert code == 0 and out.count("banana") >= 2 and "%" in out

    code, out, _ = _run(capsys, "info")
    assert code == 0 and "lite0+lite1+lite2@_head_act/gem  8 vectors x 3840 dims" in out
    assert "fresh, database-side augmentation, k=8" in out  # 8 images: k is capped

    code, out, _ = _run(capsys, "remove", str(folder / "tractor"))
    assert code == 0 and "removed 4" in out
    code, out, _ = _run(capsys, "info", "--json")
    assert json.loads(out)["feature_sets"][0]["vectors"] == 4


@pytest.mark.real
def test_models_and_layers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == ["lite0", "lite1", "lite2"]
    assert rows[0]["params"] < rows[1]["params"] < rows[2]["params"]
    code, out, _ = _run(capsys, "layers", "lite0", "--json")
    layers = {layer["name"]: layer for layer in json.loads(out)}
    assert layers["_head_act"]["channels"] == 1280 and layers["_head_act"]["stride"] == 32
    assert layers["_blocks.15"]["channels"] == 320
    assert layers["probs"]["shape"] == [1000]


def test_read_only_commands_do_not_create_a_catalogue(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    code, _, err = _run(capsys, "info", "--db", str(typo))
    assert code == 1 and "no catalogue at" in err
    assert not typo.exists() and not (tmp_path / "typo.db.indexes").exists()


def test_system_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "index", str(tmp_path), "--cache-dir", str(blocker / "cache"),
                        "--db", str(tmp_path / "new.db"))
    assert code == 1 and err.startswith("semsearch: error: ") and "Traceback" not in err


def test_closed_pipe_is_not_an_error() -> None:
    """`semsearch ... | head`: the reader leaves early; no error, no traceback."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from semsearch import cli\n"
            "cli.cmd_models = lambda args, config: print('model\\n' * 200_000) or 0\n"
            "sys.exit(cli.main(['models']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"model\nmode"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


@pytest.mark.real
def test_approximate_index_from_the_command_line(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    source = dataset("iconic200")
    folder = tmp_path / "photos"
    for cls in ("banana", "tractor", "arch"):
        (folder / cls).mkdir(parents=True)
        for image in sorted((source / cls).glob("*.jpg"))[:6]:
            shutil.copy(image, folder / cls / image.name)
    code, _, err = _run(capsys, "index", str(folder), "--model", "lite0", "--index", "IVF64,Flat")
    # The vectors are stored; only the index cannot be trained on 18 of them.
    assert code == 1 and "needs at least 64 vectors" in err
    code, out, _ = _run(capsys, "info", "--json")
    assert json.loads(out)["feature_sets"][0]["vectors"] == 18

    code, out, _ = _run(capsys, "index", str(folder), "--model", "lite0", "--index", "HNSW16",
                        "--json")
    assert code == 0 and json.loads(out)["unchanged"] == 18
    code, out, _ = _run(capsys, "info")
    assert code == 0 and "index HNSW16 cosine: 18 vectors, fresh" in out
    assert "recall@10 1.000 against exact search (efSearch=256)" in out

    query = sorted((folder / "arch").glob("*.jpg"))[0]
    code, out, _ = _run(capsys, "search", str(query), "--model", "lite0", "--index", "HNSW16",
                        "--ef-search", "16", "-k", "3", "--json")
    assert code == 0 and [h["label"] for h in json.loads(out)["hits"]] == ["arch"] * 3
    code, _, err = _run(capsys, "search", str(query), "--index", "IVF,PQ")
    assert code == 1 and "not a FAISS factory string" in err
