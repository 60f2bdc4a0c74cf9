"""The Ray engine on a real local Ray cluster (started once for the module): the same
vectors as the local engine, bad files skipped with their reason, incremental runs and
moves decided on the driver, the `--engine ray` command line, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import ROOT, labeled_folder

from semsearch import cli
from semsearch.cli import arguments as cli_arguments
from semsearch.config import resolve
from semsearch.errors import ConfigError, SemsearchError
from semsearch.indexing import ray_cluster as distributed
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport
from semsearch.indexing.ray_run import index_folder_ray
from semsearch.indexing.ray_worker import recipe_for
from semsearch.models.registry import ModelRegistry
from semsearch.session import Session
from semsearch.store import Store

# Ray Data's own settings object warns about its deprecated fields when it is copied.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    """A local two-CPU cluster. Its workers import the test models' module as the driver
    does (the specs travel pickled, by reference to it)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(ROOT / "tests"), str(ROOT)])}})
    try:
        yield
    finally:
        ray.shutdown()


def _session(tmp_path: Path, cache_dir: Path, registry: ModelRegistry, name: str,
             **settings: object) -> Session:
    engine = "ray" if name.startswith("ray") else "local"
    config = resolve({"db": str(tmp_path / f"{name}.db"), "cache_dir": str(cache_dir),
                      "model": "tiny", "batch_size": 4, "workers": 2, "engine": engine,
                      **settings}, env={})
    return Session(config, registry=registry)


def _vectors(session: Session) -> dict[str, np.ndarray]:
    record = session.store.feature_set(session.feature_set())
    ids, matrix = session.store.vectors(record.id)
    paths = session.store.images(ids.tolist())
    return {paths[int(i)].path: matrix[n] for n, i in enumerate(ids)}


def _counts(report: IndexReport) -> tuple[int, ...]:
    return (report.found, report.embedded, report.unchanged, report.moved, report.touched,
            report.removed)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Ten generated images and one corrupt file."""
    root = labeled_folder(tmp_path / "photos", 10)
    (root / "class1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    return root


def test_same_vectors_as_the_local_engine_and_bad_file_skipped(
        tmp_path: Path, cache_dir: Path, tiny_registry: ModelRegistry, folder: Path) -> None:
    with _session(tmp_path, cache_dir, tiny_registry, "local") as local, \
            _session(tmp_path, cache_dir, tiny_registry, "ray") as remote:
        expected = index_folder(local.store, local.extractor(local.feature_set()), folder,
                                batch_size=4, workers=2)
        seen: list[tuple[int, int]] = []
        report = remote.index(str(folder), progress=lambda *p: seen.append(p))
        assert _counts(report) == _counts(expected) == (11, 10, 0, 0, 0, 0)
        corrupt = str(folder / "class1" / "corrupt.png")
        assert [item.path for item in report.failed] == [corrupt]
        assert report.failed == expected.failed
        assert seen[0] == (0, 11) and seen[-1] == (11, 11)
        mine, theirs = _vectors(remote), _vectors(local)
        assert sorted(mine) == sorted(theirs) and len(mine) == 10
        for path, vector in theirs.items():
            np.testing.assert_allclose(mine[path], vector, rtol=1e-5, atol=1e-6)
        rows = remote.store.images_under(str(folder))
        assert rows.keys() == local.store.images_under(str(folder)).keys()
        assert all(r.width == 64 and r.height == 48 for r in rows.values())
        # The search index was left built, as Session.index leaves it.
        assert remote.search(str(folder / "class0" / "img00.png"), k=3).hits


def test_second_run_embeds_nothing_and_a_touched_file_is_not_embedded(
        tmp_path: Path, cache_dir: Path, tiny_registry: ModelRegistry, folder: Path) -> None:
    (folder / "class1" / "corrupt.png").unlink()  # it would be looked at on every run
    with _session(tmp_path, cache_dir, tiny_registry, "ray") as session:
        session.index(str(folder))
        before = _vectors(session)
        again = session.index(str(folder))  # nothing to look at: no Ray job
        assert _counts(again) == (10, 0, 10, 0, 0, 0) and again.failed == []
        target = folder / "class2" / "img05.png"
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        touched = session.index(str(folder))
        assert _counts(touched) == (10, 0, 9, 0, 1, 0)
        after = _vectors(session)
        assert all(np.array_equal(before[p], after[p]) for p in before)


def test_moved_and_copied_files(tmp_path: Path, cache_dir: Path,
                                tiny_registry: ModelRegistry, folder: Path) -> None:
    with _session(tmp_path, cache_dir, tiny_registry, "ray") as session:
        session.index(str(folder))
        src, dst = folder / "class0" / "img03.png", folder / "class2" / "renamed.png"
        before = session.store.image_by_path(str(src))
        vector = _vectors(session)[str(src)]
        shutil.move(src, dst)
        # Two copies of one moved file: the workers leave both out (their content has
        # vectors); one takes the old row, and the driver embeds the other.
        copy = folder / "class1" / "copy.png"
        shutil.copy(dst, copy)
        report = session.index(str(folder))
        assert (report.embedded, report.moved, report.removed) == (1, 1, 0)
        assert session.store.image_by_path(str(src)) is None
        rows = [session.store.image_by_path(str(path)) for path in (dst, copy)]
        assert before is not None and rows[0] is not None and rows[1] is not None
        assert before.id in {rows[0].id, rows[1].id} and rows[0].id != rows[1].id
        assert rows[0].label == "class2"
        vectors = _vectors(session)
        for path in (dst, copy):
            np.testing.assert_allclose(vectors[str(path)], vector, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adapted", [False, True])
def test_a_recipe_travels_and_rebuilds_the_drivers_extractor(
        tmp_path: Path, cache_dir: Path, tiny_registry: ModelRegistry, folder: Path,
        adapted: bool) -> None:
    """What an actor builds on another machine: a composite, or one through an adapter
    whose weights only the driver's catalogue holds."""
    import ray

    with _session(tmp_path, cache_dir, tiny_registry, "ray", model="tiny+tiny2") as session:
        fs = session.feature_set()
        if adapted:
            base = session.extractor(fs)
            weights = np.random.default_rng(0).normal(size=(base.dim, 8)).astype(np.float32)
            session.store.save_adapter("mine", fs, base.preprocessing, weights, "{}")
            fs = fs.adapted("mine")
        extractor = session.extractor(fs)
        recipe = ray.cloudpickle.loads(ray.cloudpickle.dumps(recipe_for(session, fs, extractor)))
        rebuilt = recipe.build()
        assert rebuilt.preprocessing == extractor.preprocessing
        paths = [str(p) for p in sorted(folder.rglob("img*.png"))[:3]]
        inputs = [extractor.decode(path)[0] for path in paths]
        np.testing.assert_allclose(rebuilt.embed_sets(inputs)[0],
                                   extractor.embed_sets(inputs)[0], rtol=1e-5, atol=1e-6)


def test_a_worker_that_cannot_embed_stops_the_run_with_its_reason(
        tmp_path: Path, cache_dir: Path, tiny_registry: ModelRegistry, folder: Path) -> None:
    with _session(tmp_path, cache_dir, tiny_registry, "ray") as session:
        fs = session.feature_set()
        extractor = session.extractor(fs)
        # As if a node had another version of the model.
        recipe = dataclasses.replace(recipe_for(session, fs, extractor), dims=(999,))
        with pytest.raises(SemsearchError, match="install the same semsearch and models"):
            index_folder_ray(session.store, extractor, recipe, folder, batch_size=4)


def test_cli_index_with_engine_ray(tmp_path: Path, cache_dir: Path, folder: Path,
                                   tiny_registry: ModelRegistry, no_config_file: None,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_arguments, "open_session", lambda config, create=False: Session(
        config, registry=tiny_registry, create=create))
    db = tmp_path / "cli.db"
    argv = ["index", str(folder), "--engine", "ray", "--model", "tiny", "--db", str(db),
            "--cache-dir", str(cache_dir), "--batch-size", "4", "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["found"], report["embedded"]) == (11, 10)
    assert [item["path"] for item in report["failed"]] == [str(folder / "class1" / "corrupt.png")]
    with Store.open(db) as store:
        assert len(store.images_under(str(folder))) == 10


def test_an_unreachable_cluster_is_a_clear_error(
        capsys: pytest.CaptureFixture[str], no_config_file: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        distributed._check_reachable("127.0.0.1:1")
    code = cli.main(["index", str(tmp_path), "--engine", "ray", "--address", "127.0.0.1:1",
                     "--db", str(tmp_path / "x.db")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Ray cluster" in err and err.count("\n") == 1


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'semsearch\[ray\]'"):
        distributed._import_ray()
