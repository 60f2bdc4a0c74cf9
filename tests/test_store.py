"""The SQLite catalogue: schema versions, migrations and transactional writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tests.schema_v5 import SQLITE_MIGRATIONS as _MIGRATIONS

from semsearch.errors import NotIndexedError, StoreError, StoreVersionError
from semsearch.featureset import FeatureSet
from semsearch.store import SCHEMA_VERSION, NewImage, Store, SweepRow

FS = FeatureSet("tiny", "head_act", "avg")


def _item(fs_id: int, path: str, sha: str = "a" * 64, value: float = 1.0) -> NewImage:
    return NewImage(path, 10, 1, sha, 4, 3, "label", {fs_id: np.full(4, value, np.float32)})


def test_new_store_has_current_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.feature_sets() == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreVersionError, match="upgrade semsearch"):
        Store.open(tmp_path / "s.db")


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use .* as a semsearch catalogue"):
        Store.open(tmp_path / "s.db")


def test_another_programs_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE images(x)")
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        Store.open(tmp_path / "other.db")
    conn = sqlite3.connect(tmp_path / "other.db")
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["images"]


def test_missing_catalogue_is_not_created_when_only_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no catalogue at"):
        Store.open(tmp_path / "typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(tmp_path)


def test_unwritable_locations_are_clear_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "x.db")


def test_migrates_forward_from_version_1(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    for statement in _MIGRATIONS[0].split(";"):
        conn.execute(statement)
    conn.execute("INSERT INTO images(path, size, mtime_ns, sha256, width, height, label,"
                 " indexed_at) VALUES ('/a.png', 1, 1, 'x', 1, 1, 'l', 0)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with Store.open(tmp_path / "old.db") as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        assert len(store.catalogue_id) == 32 and store.count_images() == 1
        assert store.sweeps() == []
    with Store.open(tmp_path / "other.db") as other:
        assert other.catalogue_id != Store.open(tmp_path / "old.db").catalogue_id


def test_reopening_keeps_data(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        store.write_batch([_item(fs.id, "/x/a.png")])
    with Store.open(tmp_path / "s.db") as store:
        ids, vectors = store.vectors(store.feature_set(FS).id)
        assert len(ids) == 1 and vectors.tolist() == [[1.0] * 4]


def test_failed_batch_writes_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        bad = NewImage("/x/b.png", 10, 1, "b" * 64, 4, 3, "l", {fs.id: np.ones(5, np.float32)})
        with pytest.raises(ValueError, match="length 4"):
            store.write_batch([_item(fs.id, "/x/a.png"), bad])
        assert store.count_images() == 0
        assert store.feature_set(FS).version == 0


def test_new_content_at_a_known_path_drops_other_feature_sets_vectors(tmp_path: Path) -> None:
    other = FeatureSet("tiny", "head_act", "max")
    with Store.open(tmp_path / "s.db") as store:
        a = store.ensure_feature_set(FS, "prep", 4)
        b = store.ensure_feature_set(other, "prep", 4)
        store.write_batch([_item(a.id, "/x/a.png")])
        store.write_batch([_item(b.id, "/x/a.png")])
        store.write_batch([_item(a.id, "/x/a.png", sha="c" * 64, value=2.0)])
        assert store.vectors(b.id)[0].size == 0
        assert store.vectors(a.id)[1].tolist() == [[2.0] * 4]


def test_dimension_change_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.ensure_feature_set(FS, "prep", 4)
        with pytest.raises(StoreError, match="4 dimensions"):
            store.ensure_feature_set(FS, "prep", 8)


def test_unknown_feature_set_lists_known_ones(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.ensure_feature_set(FS, "prep", 4)
        with pytest.raises(NotIndexedError, match="tiny@head_act/avg"):
            store.feature_set(FeatureSet("tiny", "stem", "avg"))


def test_remove_under_is_path_prefix_safe(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        store.write_batch([_item(fs.id, "/x/cats/a.png", sha="1" * 64),
                            _item(fs.id, "/x/cats2/b.png", sha="2" * 64),
                            _item(fs.id, "/x/cats", sha="3" * 64)])
        assert store.remove_under("/x/cats") == 2
        assert [r.path for r in store.images_under("/x").values()] == ["/x/cats2/b.png"]


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for trial in range(10):
        path = tmp_path / f"race{trial}.db"
        with ThreadPoolExecutor(4) as pool:
            stores = list(pool.map(Store.open, [path] * 4))
        assert {s.schema_version for s in stores} == {SCHEMA_VERSION}
        assert len({s.catalogue_id for s in stores}) == 1
        for store in stores:
            store.close()


def test_one_store_serves_many_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)

        def write(i: int) -> None:
            store.write_batch([_item(fs.id, f"/x/{i}.png", sha=f"{i:064x}", value=float(i))])
            assert store.vectors(fs.id)[0].size >= 1 and store.version(fs.id) >= 1

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(200)))
        ids, vectors = store.vectors(fs.id)
        assert len(ids) == 200 and store.version(fs.id) == 200
        assert sorted(vectors[:, 0].tolist()) == [float(i) for i in range(200)]


def test_one_batch_writes_several_feature_sets(tmp_path: Path) -> None:
    other = FeatureSet("tiny", "stem", "max")
    with Store.open(tmp_path / "s.db") as store:
        a = store.ensure_feature_set(FS, "prep", 4)
        b = store.ensure_feature_set(other, "prep", 2)
        item = NewImage("/x/a.png", 10, 1, "a" * 64, 4, 3, "l",
                        {a.id: np.ones(4, np.float32), b.id: np.full(2, 3.0, np.float32)})
        store.write_batch([item])
        assert store.vectors(a.id)[1].tolist() == [[1.0] * 4]
        assert store.vectors(b.id)[1].tolist() == [[3.0] * 2]
        assert store.version(a.id) == store.version(b.id) == 1
        bad = NewImage("/x/b.png", 10, 1, "b" * 64, 4, 3, "l",
                       {a.id: np.ones(4, np.float32), b.id: np.ones(4, np.float32)})
        with pytest.raises(ValueError, match="length 2"):
            store.write_batch([bad])
        assert store.count_images() == 1 and store.version(a.id) == 1


def test_sweeps_are_stored_and_read_back(tmp_path: Path) -> None:
    rows = [SweepRow("tiny@stem/avg", "prep", "cosine", '{"map": 0.5}',
                     np.array([3, 1], np.int64), np.array([40.0, 60.0], np.float32)),
            SweepRow("tiny@stem/avg", "prep", "euclidean", '{"map": 0.4}',
                     np.array([3, 1], np.int64), np.array([30.0, 50.0], np.float32))]
    with Store.open(tmp_path / "s.db") as store:
        first = store.save_sweep("/data/a", '{"models": ["tiny"]}', rows)
        second = store.save_sweep("/data/b", "{}", rows[:1])
        assert [s.id for s in store.sweeps()] == [second.id, first.id]
        assert [s.id for s in store.sweeps("/data/a")] == [first.id]
    with Store.open(tmp_path / "s.db") as store:
        back = store.sweep_rows(first.id)
        assert [(r.metric, r.scores) for r in back] == [("cosine", '{"map": 0.5}'),
                                                        ("euclidean", '{"map": 0.4}')]
        assert back[0].image_ids.tolist() == [3, 1]
        assert back[1].per_query.tolist() == [30.0, 50.0]
        with pytest.raises(NotIndexedError, match="no comparison run"):
            store.sweep_rows(99)
