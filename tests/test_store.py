"""The SQLite catalogue: schema versions, migrations and transactional writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from semsearch.errors import NotIndexedError, StoreVersionError
from semsearch.featureset import FeatureSet
from semsearch.store import SCHEMA_VERSION, NewImage, Store

FS = FeatureSet("tiny", "head_act", "avg")


def _item(path: str, sha: str = "a" * 64, value: float = 1.0) -> NewImage:
    return NewImage(path, 10, 1, sha, 4, 3, "label", np.full(4, value, np.float32))


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
    with pytest.raises(StoreVersionError, match="not a semsearch catalogue"):
        Store.open(tmp_path / "s.db")


def test_reopening_keeps_data(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        store.write_batch(fs.id, [_item("/x/a.png")])
    with Store.open(tmp_path / "s.db") as store:
        ids, vectors = store.vectors(store.feature_set(FS).id)
        assert len(ids) == 1 and vectors.tolist() == [[1.0] * 4]


def test_failed_batch_writes_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        bad = NewImage("/x/b.png", 10, 1, "b" * 64, 4, 3, "l", np.ones(5, np.float32))
        with pytest.raises(ValueError, match="length 4"):
            store.write_batch(fs.id, [_item("/x/a.png"), bad])
        assert store.count_images() == 0
        assert store.feature_set(FS).version == 0


def test_new_content_at_a_known_path_drops_other_feature_sets_vectors(tmp_path: Path) -> None:
    other = FeatureSet("tiny", "head_act", "max")
    with Store.open(tmp_path / "s.db") as store:
        a = store.ensure_feature_set(FS, "prep", 4)
        b = store.ensure_feature_set(other, "prep", 4)
        store.write_batch(a.id, [_item("/x/a.png")])
        store.write_batch(b.id, [_item("/x/a.png")])
        store.write_batch(a.id, [_item("/x/a.png", sha="c" * 64, value=2.0)])
        assert store.vectors(b.id)[0].size == 0
        assert store.vectors(a.id)[1].tolist() == [[2.0] * 4]


def test_dimension_change_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.ensure_feature_set(FS, "prep", 4)
        with pytest.raises(StoreVersionError, match="4 dimensions"):
            store.ensure_feature_set(FS, "prep", 8)


def test_unknown_feature_set_lists_known_ones(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.ensure_feature_set(FS, "prep", 4)
        with pytest.raises(NotIndexedError, match="tiny@head_act/avg"):
            store.feature_set(FeatureSet("tiny", "stem", "avg"))


def test_remove_under_is_path_prefix_safe(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        fs = store.ensure_feature_set(FS, "prep", 4)
        store.write_batch(fs.id, [_item("/x/cats/a.png", sha="1" * 64),
                                  _item("/x/cats2/b.png", sha="2" * 64),
                                  _item("/x/cats", sha="3" * 64)])
        assert store.remove_under("/x/cats") == 2
        assert [r.path for r in store.images_under("/x").values()] == ["/x/cats2/b.png"]
