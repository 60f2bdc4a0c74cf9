"""Concurrency and load on a real `semsearch serve` (tests/load.py): client threads on
loopback search by id and by upload, with no errors and the server's memory flat after the
warm-up; and searches through the API while `semsearch index` writes to the same catalogue.
Latencies are reported, never asserted. A long run by hand:
SEMSEARCH_LOAD_REQUESTS=10000 python -m pytest tests/test_load.py -s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import dataset
from tests.faults import copy_images, export_tiny_onnx, images_in, tiny_collection
from tests.load import collection_id, hammer, image_bytes, image_ids, search_while_indexing, serve

REQUESTS = int(os.environ.get("SEMSEARCH_LOAD_REQUESTS", "2000"))
CLIENTS = int(os.environ.get("SEMSEARCH_LOAD_CLIENTS", "4"))
RSS_GROWTH_MB = float(os.environ.get("SEMSEARCH_LOAD_RSS_MB", "64"))
# Ends the run if something hangs; a request's own timeout is 30 s.
BUDGET = float(os.environ.get("SEMSEARCH_LOAD_BUDGET", str(max(300.0, REQUESTS * 0.2))))


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("load-model") / "tiny.onnx")


@pytest.mark.real
def test_concurrent_searches_by_id_and_upload_answer_without_errors_or_memory_growth(
        tmp_path: Path, onnx: Path) -> None:
    root = tmp_path / "photos"
    photos = copy_images([dataset("iconic200")], root)
    collection = tiny_collection(root, tmp_path / "cat.db", onnx)
    collection.run_index()
    with serve(collection) as server:
        cid = collection_id(server.base_url, root)
        ids = image_ids(server.base_url, cid)
        assert len(ids) == len(photos)
        report = hammer(server.base_url, CLIENTS, REQUESTS, ids, image_bytes(photos),
                        cid=cid, pid=server.pid, budget=BUDGET)
        faults = server.faults()
    print("\n" + report.summary())
    assert report.errors == 0, report.error_examples
    assert report.timeouts == 0
    assert report.completed == REQUESTS, "the run ran out of time"
    assert report.by_kind["id"] > 0 and report.by_kind["upload"] > 0
    assert not faults, "\n".join(faults)
    assert report.rss_growth_mb < RSS_GROWTH_MB, report.rss_kb


@pytest.mark.real
def test_searches_go_on_while_indexing_and_then_find_the_new_images(
        tmp_path: Path, onnx: Path) -> None:
    root = tmp_path / "photos"
    photos = copy_images([dataset("iconic200")], root)
    # Thousands of new images in small batches: many write transactions while the
    # server reads, and the index goes stale again and again.
    new_root = tmp_path / "more"
    copy_images([dataset("caltech101")], new_root)
    collection = tiny_collection(root, tmp_path / "cat.db", onnx)
    collection.run_index()
    with serve(collection) as server:
        ids = image_ids(server.base_url, collection_id(server.base_url, root))
        report = search_while_indexing(server, collection, new_root, ids,
                                       image_bytes(photos), clients=2,
                                       index_settings={"batch_size": "2"})
        log = server.output()
    print(f"\nduring indexing ({report.indexer_seconds:.1f} s): {report.during.summary()}")
    print(f"searches of the newest new image during indexing: {dict(report.watched)}")
    print(f"new images: {report.new_listed}/{report.new_images} listed, "
          f"{report.new_found}/{report.new_searched} searches by their ids found hits")
    assert report.indexer_returncode == 0, report.indexer_stderr
    assert report.during.errors == 0, (report.during.error_examples, log[-5000:])
    assert report.during.completed > 0
    assert not report.watch_problems, report.watch_problems
    assert not report.server_faults, log[-5000:]
    assert not report.problems, report.problems
    assert report.new_images == len(images_in(new_root)) > 0
    assert report.new_found == report.new_searched > 0
