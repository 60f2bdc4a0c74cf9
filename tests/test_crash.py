"""Killing the indexer: `semsearch index` runs as its own process on a real collection
(iconic200, with fashion200 images to add) and is killed with SIGKILL at random moments,
many times, while the collection changes between runs; then one run finishes, and the
catalogue, its vectors and its index must agree with the disk. Also: a kill at each step
of writing the index files. benchmarks/reliability.py runs the long version."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset
from tests.faults import (
    CLI,
    Collection,
    check_agreement,
    copy_images,
    export_tiny_onnx,
    images_in,
    kill_rounds,
    mutate,
    tiny_collection,
)

KILLS = int(os.environ.get("SEMSEARCH_KILLS", "10"))


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("crash-model") / "tiny.onnx")


def _collection(tmp_path: Path, onnx: Path, **settings: str) -> tuple[Collection, list[Path]]:
    root = tmp_path / "photos"
    copy_images([dataset("iconic200")], root)
    reserve = images_in(dataset("fashion200"))
    return tiny_collection(root, tmp_path / "cat.db", onnx, **settings), reserve


@pytest.mark.real
@pytest.mark.parametrize("index", ["Flat", "HNSW16"])
def test_killed_runs_resume_to_a_catalogue_that_agrees_with_the_disk(
        tmp_path: Path, onnx: Path, index: str) -> None:
    collection, reserve = _collection(tmp_path, onnx, index=index)
    rng = np.random.default_rng(8 if index == "Flat" else 9)
    report = kill_rounds(collection, KILLS, rng, reserve)
    assert report.kills == KILLS
    mutate(collection.root, reserve, rng)
    collection.run_index()
    counts = check_agreement(collection)
    assert counts["images"] > 150


@pytest.mark.real
@pytest.mark.parametrize("index", ["pgvector", "Flat"])
def test_killed_runs_on_a_postgresql_catalogue_resume_to_agreement(
        tmp_path: Path, onnx: Path, index: str, pg_url: str) -> None:
    # A real PostgreSQL (pgserver): pgvector's HNSW inside it, or FAISS files beside it.
    collection, reserve = _collection(tmp_path, onnx, index=index)
    collection.url = pg_url
    rng = np.random.default_rng(11)
    report = kill_rounds(collection, max(2, KILLS // 2), rng, reserve)
    assert report.kills == max(2, KILLS // 2)
    mutate(collection.root, reserve, rng)
    collection.run_index()
    assert check_agreement(collection)["images"] > 150


_CRASH_AT_WRITE = textwrap.dedent("""
    import os, signal, sys
    import semsearch.atomic as atomic
    import semsearch.index.catalog as catalog

    target, calls = int(sys.argv[1]), [0]
    real = atomic.write_atomically

    def crashing(path, write):
        calls[0] += 1
        if calls[0] != target:
            return real(path, write)

        def half_then_die(tmp):
            write(tmp)
            os.truncate(tmp, os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

        return real(path, half_then_die)

    catalog.write_atomically = crashing
    from semsearch.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.real
@pytest.mark.parametrize("index, writes", [("Flat", 3), ("HNSW16", 1)])
def test_a_kill_while_the_index_file_is_written_loses_nothing(
        tmp_path: Path, onnx: Path, index: str, writes: int) -> None:
    # The exact index with query expansion writes three files (gallery, originals, then
    # the manifest); an approximate one writes its files, then its manifest atomically.
    collection, reserve = _collection(tmp_path, onnx, index=index)
    collection.run_index()
    rng = np.random.default_rng(3)
    for step in range(1, writes + 1):
        mutate(collection.root, reserve, rng, count=4)
        done = subprocess.run([*CLI[:2], _CRASH_AT_WRITE, str(step),
                               *collection.index_command()[len(CLI):]],
                              env=collection.env(), capture_output=True, timeout=300)
        assert done.returncode == -9, done.stderr.decode(errors="replace")
        with collection.session() as session:  # searching right after the crash works
            hits = session.search(str(images_in(collection.root)[0]), k=3).hits
            assert len(hits) == 3
    collection.run_index()
    check_agreement(collection)
    assert not [p for p in (collection.db.parent / "cat.db.indexes").iterdir()
                if p.name.endswith(".tmp")]


@pytest.mark.real
def test_the_agreement_check_finds_each_kind_of_disagreement(tmp_path: Path, onnx: Path) -> None:
    # The check above must be able to fail: each damage below is one a crash could cause.
    collection, _ = _collection(tmp_path, onnx)
    collection.run_index()
    check_agreement(collection)
    files = images_in(collection.root)

    def damaged(sql: str, *args: object) -> str:
        with sqlite3.connect(collection.db) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute(sql, args)
        with pytest.raises(AssertionError) as info:
            check_agreement(collection)
        return str(info.value)

    with sqlite3.connect(collection.db) as db:
        (a, va), (b, vb) = db.execute("SELECT image_id, vector FROM vectors LIMIT 2").fetchall()
    assert "vectors of other content" in damaged(
        "UPDATE vectors SET vector = ? WHERE image_id = ?", vb, a)
    with sqlite3.connect(collection.db) as db:
        db.execute("UPDATE vectors SET vector = ? WHERE image_id = ?", (va, a))
    assert "index not fresh" in damaged("UPDATE feature_sets SET version = version + 1")
    assert "missing" in damaged("DELETE FROM images WHERE path = ?", str(files[0]))
    collection.run_index()
    check_agreement(collection)
    files[1].write_bytes(files[2].read_bytes())
    assert "stored twice, or content is lost" in damaged("SELECT 1")
