"""The bundled pretrained weights on real images from ../shared/datasets."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset

from semsearch.config import resolve
from semsearch.index.metric import Metric
from semsearch.indexing.local import index_folder
from semsearch.models.layers import PROBS
from semsearch.models.registry import default_registry
from semsearch.models.runtime import OnnxBackbone, TorchBackbone
from semsearch.query.service import KnownImageQuery
from semsearch.session import Session

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def lite0_session(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):  # type: ignore[no-untyped-def]
    db = tmp_path_factory.mktemp("real") / "real.db"
    # lite0 alone, as the tests using this fixture are about that model.
    config = resolve({"db": str(db), "cache_dir": str(cache_dir), "model": "lite0",
                      "pool": "avg"}, env={})
    with Session(config) as session:
        yield session


def _pixels(session: Session, paths: list[Path]) -> np.ndarray:
    extractor = session.extractor(session.feature_set(model="lite0"))
    return np.stack([extractor.decode(str(p))[0] for p in paths])


def test_onnx_agrees_with_torch_on_real_images(lite0_session: Session, cache_dir: Path) -> None:
    spec = default_registry().get("lite0")
    images = sorted(dataset("iconic200").glob("*/*.jpg"))[::40]
    pixels = _pixels(lite0_session, images)
    layers = ["_blocks.8", "_head_act", PROBS]
    reference = TorchBackbone(spec, layers).run(pixels)
    fast = OnnxBackbone(spec, layers, cache_dir).run(pixels)
    for layer in layers:
        scale = float(np.abs(reference[layer]).max())
        np.testing.assert_allclose(fast[layer], reference[layer], rtol=1e-3, atol=1e-4 * scale)


def test_classifier_recognises_bananas(lite0_session: Session, cache_dir: Path) -> None:
    spec = default_registry().get("lite0")
    bananas = sorted((dataset("iconic200") / "banana").glob("*.jpg"))
    probs = OnnxBackbone(spec, [PROBS], cache_dir).run(_pixels(lite0_session, bananas))[PROBS]
    names = spec.class_names() if spec.class_names else []
    top = Counter(names[i] for i in probs.argmax(axis=1))
    assert top.most_common(1)[0][0].lower() == "banana"
    assert top.most_common(1)[0][1] >= 0.8 * len(bananas)


def test_iconic200_nearest_neighbour_has_the_query_class(lite0_session: Session) -> None:
    root = dataset("iconic200")
    extractor = lite0_session.extractor(lite0_session.feature_set())
    report = index_folder(lite0_session.store, extractor, root)
    assert report.found == 200 and not report.failed
    service = lite0_session.search_service()
    record = lite0_session.indexed_feature_set(None)
    images = lite0_session.store.images_under(str(root))
    hits = 0
    for image in images.values():
        result = service.search(KnownImageQuery(image.id), feature_set=record,
                                metric=Metric("cosine"), k=1)
        hits += result.hits[0].label == image.label
    accuracy = hits / len(images)
    print(f"iconic200 top-1 same-class rate, lite0 cosine: {accuracy:.3f}")
    assert accuracy >= 0.90


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def test_kill_9_resumes_with_nothing_lost_or_duplicated(tmp_path: Path, cache_dir: Path) -> None:
    source = dataset("iconic200")
    folder = tmp_path / "photos"
    for image in sorted(source.glob("*/*.jpg"))[:160]:
        (folder / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.parent.name / image.name)
    OnnxBackbone(default_registry().get("lite0"), ["_head_act"], cache_dir)  # warm the cache
    db = tmp_path / "killed.db"
    # lite0 alone: this is about the pipeline surviving kills, not about the model.
    env = {**os.environ, "SEMSEARCH_DB": str(db), "SEMSEARCH_CACHE_DIR": str(cache_dir),
           "SEMSEARCH_MODEL": "lite0",
           "SEMSEARCH_BATCH_SIZE": "8", "SEMSEARCH_CONFIG": str(tmp_path / "c.toml")}
    (tmp_path / "c.toml").write_text("")
    command = [sys.executable, "-m", "semsearch", "-q", "index", str(folder)]
    counts_at_kill = []
    rng = np.random.default_rng(1)
    for _ in range(3):
        before = _count(db)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # Kill at a random moment once this run has committed at least one batch.
        deadline = time.monotonic() + 120
        while _count(db) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            counts_at_kill.append(_count(db))
        proc.wait(timeout=60)
    # At least one kill landed mid-run, with part of the folder committed.
    assert any(0 < count < 160 for count in counts_at_kill), counts_at_kill
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    clean_db = tmp_path / "clean.db"
    config = resolve({"db": str(clean_db), "cache_dir": str(cache_dir), "model": "lite0"},
                     env={})
    with Session(config) as clean:
        index_folder(clean.store, clean.extractor(clean.feature_set()), folder)
        clean_ids, clean_vectors = clean.store.vectors(clean.indexed_feature_set(None).id)
        clean_paths = [clean.store.image(int(i)).path for i in clean_ids]
    with Session(resolve({"db": str(db), "cache_dir": str(cache_dir), "model": "lite0"},
                         env={})) as resumed:
        record = resumed.indexed_feature_set(None)
        ids, vectors = resumed.store.vectors(record.id)
        paths = [resumed.store.image(int(i)).path for i in ids]
        assert resumed.store.count_images() == 160
    assert len(paths) == len(set(paths)) == 160
    expected = dict(zip(clean_paths, clean_vectors, strict=True))
    for path, vector in zip(paths, vectors, strict=True):
        np.testing.assert_allclose(vector, expected[path], rtol=1e-4, atol=1e-5)


def test_expansion_keeps_an_external_copy_next_to_its_original(lite0_session: Session,
                                                               tmp_path: Path) -> None:
    root = dataset("iconic200")
    extractor = lite0_session.extractor(lite0_session.feature_set())
    index_folder(lite0_session.store, extractor, root)
    service = lite0_session.search_service()
    record = lite0_session.indexed_feature_set(None)
    for name in ("banana/191.jpg", "tractor/041.jpg", "stonehenge/101.jpg"):
        copy = tmp_path / name.replace("/", "-")
        shutil.copy(root / name, copy)
        result = service.search(service.resolve(str(copy)), feature_set=record,
                                metric=Metric(), k=5, expand_k=10)
        assert result.hits[0].path == str(root / name)
        assert all(hit.label == name.split("/")[0] for hit in result.hits)


@pytest.mark.parametrize("name, target", [("iconic200", 97.0), ("fashion200", 88.0)])
def test_default_configuration_beats_the_targets_through_search(
        tmp_path: Path, cache_dir: Path, name: str, target: float) -> None:
    """The score of the published table, measured through the same Session.index and
    SearchService path as `semsearch index` / `search` with no options."""
    from semsearch.ranking import weighted_precision_at_15

    root = dataset(name)
    config = resolve({"db": str(tmp_path / "d.db"), "cache_dir": str(cache_dir)}, env={})
    with Session(config) as session:
        assert session.index(str(root)).embedded == 200
        images = session.store.images_under(str(root))
        record = session.indexed_feature_set(None)
        service = session.search_service()
        rel = []
        for image in images.values():
            result = service.search(KnownImageQuery(image.id), feature_set=record,
                                    metric=session.metric(), k=15,
                                    expand_k=config.expand_k)
            rel.append([hit.label == image.label for hit in result.hits])
    score = float(weighted_precision_at_15(np.array(rel)).mean())
    print(f"{name} default configuration, weighted P@15 through search: {score:.2f}")
    assert score >= target
