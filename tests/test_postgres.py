"""The PostgreSQL + pgvector catalogue, on a real server started by the `pgserver` package:
the same store contract as SQLite, migrations, transactions with readers running alongside
a writer, pgvector's HNSW index, and the whole pipeline (index, search, info, the JSON API)
with only --db changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import labeled_folder

from semsearch.config import resolve
from semsearch.errors import ConfigError, StoreError, StoreVersionError, UnknownMetricError
from semsearch.featureset import FeatureSet
from semsearch.index.catalog import IndexCatalog
from semsearch.index.exact import ExactIndex
from semsearch.index.metric import Metric
from semsearch.session import Session
from semsearch.store import Move, NewImage, Store, SweepRow
from semsearch.store.postgres import PostgresStore, redact

psycopg = pytest.importorskip("psycopg")
FS = FeatureSet("tiny", "head", "gem")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store: Store = Store.open(tmp_path / "s.db")
    else:
        store = PostgresStore.open_url(request.getfixturevalue("pg_url"),
                                       index_root=tmp_path / "cache")
    with store:
        yield store


def _image(path: str, fs_id: int, vector: np.ndarray, sha: str | None = None) -> NewImage:
    return NewImage(path, 10, 1, sha or f"{abs(hash(path)):064x}", 4, 3, "c",
                    {fs_id: vector.astype(np.float32)})


def test_the_same_store_contract_on_both_backends(any_store: Store) -> None:
    store = any_store
    rec = store.ensure_feature_set(FS, "pre", 4)
    assert store.ensure_feature_set(FS, "pre", 4) == rec  # idempotent
    vecs = np.arange(24, dtype=np.float32).reshape(6, 4)
    store.write_batch([_image(f"/photos/a/{i}.jpg", rec.id, vecs[i]) for i in range(5)]
                      + [_image("/photos/ab/x.jpg", rec.id, vecs[5])])
    ids, got = store.vectors(rec.id)
    np.testing.assert_array_equal(got, vecs)
    assert store.feature_set(FS).version == 1 and store.count_vectors(rec.id) == 6
    np.testing.assert_array_equal(store.vector(rec.id, int(ids[2])), vecs[2])
    assert len(store.images_under("/photos/a")) == 5  # not /photos/ab: prefix-safe
    under_ids, _ = store.vectors_under(rec.id, "/photos/a")
    assert len(under_ids) == 5 and store.has_vectors_under(rec.id, "/photos/ab")
    page_ids, page = store.vector_page(rec.id, int(ids[1]), 2)
    np.testing.assert_array_equal(page_ids, ids[2:4])
    np.testing.assert_array_equal(store.vectors_of(rec.id, ids[[4, 0]])[1], vecs[[0, 4]])

    # A move keeps the id and the vector and leaves the version (indexes stay valid).
    store.write_batch([], [Move(int(ids[0]), "/photos/b/moved.jpg", 10, 2, "b")])
    assert store.image(int(ids[0])).path == "/photos/b/moved.jpg"
    assert store.feature_set(FS).version == 1
    # New content at a known path replaces its vector.
    store.write_batch([_image("/photos/a/1.jpg", rec.id, vecs[0] + 100, sha="f" * 64)])
    np.testing.assert_array_equal(store.vector(rec.id, int(ids[1])), vecs[0] + 100)

    store.add_vectors(rec.id, ids[:2], vecs[:2] * 2)
    np.testing.assert_array_equal(store.vectors(rec.id)[1][:2], vecs[:2] * 2)
    with pytest.raises(ValueError):
        store.write_batch([_image("/photos/c.jpg", rec.id, np.array([np.nan, 1, 2, 3]))])
    assert store.count_images() == 6  # the failed batch wrote nothing

    sweep = store.save_sweep("/photos", "{}", [SweepRow("fs", "pre", "cosine", "{}",
                                                        ids[:3], np.ones(3, np.float32))])
    assert store.sweeps("/photos")[0].id == sweep.id
    np.testing.assert_array_equal(store.sweep_rows(sweep.id)[0].image_ids, ids[:3])

    adapter = store.save_adapter("mine", FS, "pre", np.eye(4, 2, dtype=np.float32), "{}")
    assert store.adapter_created("mine") == adapter.created_at  # exactly: a currency check
    np.testing.assert_array_equal(store.adapter("mine").weights, np.eye(4, 2))
    store.save_adapter("mine", FS, "pre", np.eye(4, 3, dtype=np.float32), "{}")
    assert store.adapter("mine").weights.shape == (4, 3) and store.adapter_names() == ["mine"]

    cid = store.add_collection("/photos")
    assert store.add_collection("/photos") == cid and store.collection_root(cid) == "/photos"
    store.save_map(rec.id, "/photos", 1, ids[:2], np.ones((2, 2), np.float32))
    store.save_map(rec.id, "/photos", 2, ids[:3], np.zeros((3, 2), np.float32))
    version, map_ids, coords = store.load_map(rec.id, "/photos") or (0, None, None)
    assert version == 2 and coords is not None and coords.shape == (3, 2)
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.meta("k") == "2" and store.meta("absent") is None

    assert store.remove_under("/photos/a") == 4
    assert store.count_images() == 2 and store.feature_set(FS).version > 1
    assert store.collections() == [(cid, "/photos")]


def test_migrations_and_identity(pg_url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no semsearch catalogue"):
        PostgresStore.open_url(pg_url, index_root=tmp_path, create=False)
    # Several processes opening a new catalogue at once create it once.
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: PostgresStore.open_url(pg_url, index_root=tmp_path),
                               range(4)))
    assert len({s.catalogue_id for s in stores}) == 1
    assert {s.schema_version for s in stores} == {Store.open(tmp_path / "x.db").schema_version}
    for s in stores:
        s.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreVersionError, match="newer than this semsearch knows"):
        PostgresStore.open_url(pg_url, index_root=tmp_path)


def test_foreign_tables_and_bad_urls_are_clear_errors(pg_server: str, pg_url: str,
                                                      tmp_path: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE images(x int)")
    with pytest.raises(StoreError, match="not a semsearch catalogue"):
        PostgresStore.open_url(pg_url, index_root=tmp_path)
    with pytest.raises(StoreError, match="cannot connect to"):
        PostgresStore.open_url(pg_server.replace("/postgres?", "/nosuchdb?"),
                               index_root=tmp_path)
    assert redact("postgresql://me:secret@db.example/x") == "postgresql://me:***@db.example/x"


def test_readers_see_whole_batches_while_a_writer_indexes(pg_url: str, tmp_path: Path) -> None:
    writer = PostgresStore.open_url(pg_url, index_root=tmp_path)
    reader = PostgresStore.open_url(pg_url, index_root=tmp_path)
    rec = writer.ensure_feature_set(FS, "pre", 8)
    rng = np.random.default_rng(0)
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                ids, vectors = reader.vectors(rec.id)
                assert len(ids) == len(vectors)
                seen.append(len(ids))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for batch in range(20):
        writer.write_batch([_image(f"/p/{batch}/{i}.jpg", rec.id, rng.random(8))
                            for i in range(25)])
    done.set()
    thread.join()
    assert not errors
    assert seen and all(n % 25 == 0 for n in seen) and seen == sorted(seen)
    assert reader.count_vectors(rec.id) == 500
    writer.close()
    reader.close()


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 1, (30, d))
    return np.maximum(centers[rng.integers(0, 30, n)] + rng.normal(0, 0.1, (n, d)), 0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "ip"])
def test_pgvector_hnsw_index(pg_url: str, tmp_path: Path, metric: str) -> None:
    with PostgresStore.open_url(pg_url, index_root=tmp_path) as store:
        rec = store.ensure_feature_set(FS, "pre", 32)
        x = _clustered(3000, 32).astype(np.float32)
        store.write_batch([_image(f"/p/{i}.jpg", rec.id, x[i]) for i in range(len(x))])
        rec = store.feature_set(FS)
        catalog = IndexCatalog(store, index="pgvector")
        loaded = catalog.get(rec, Metric(metric))
        assert loaded.manifest["index"] == "pgvector HNSW"
        assert store.hnsw_index_name(rec.id, metric) in store.explain_nearest(rec.id, 32, metric)
        ids, vectors = store.vectors(rec.id)
        exact = ExactIndex.build(vectors, ids, Metric(metric))
        q = x[:30] + 0.01
        d_pg, i_pg = loaded.index.search(q, 10)
        d_ex, i_ex = exact.search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i_pg, i_ex, strict=True)])
        assert recall >= 0.9
        # Distances are the metric's own, as exact search gives them for the same image.
        # (HNSW's graph is random; under inner product, a rare query can miss its whole
        # exact top-10, so the comparison is over the images both found.)
        compared = 0
        for row in range(len(q)):
            truth = dict(zip(i_ex[row].tolist(), d_ex[row].tolist(), strict=True))
            both = [(d, truth[i]) for d, i in zip(d_pg[row], i_pg[row], strict=True)
                    if i in truth]
            if both:
                compared += 1
                np.testing.assert_allclose(*zip(*both, strict=True), rtol=1e-3, atol=1e-4)
        assert compared >= 0.9 * len(q)
        [status] = catalog.status(rec)
        assert status.index == "pgvector HNSW" and status.recall_at_10 is not None
        assert status.recall_at_10 >= 0.9
        assert IndexCatalog(store, exact_max=1000).spec_for(rec) is None  # auto: pgvector


def test_pgvector_limits_are_said(pg_url: str, tmp_path: Path) -> None:
    with PostgresStore.open_url(pg_url, index_root=tmp_path) as store:
        rec = store.ensure_feature_set(FS, "pre", 2048)
        x = _clustered(40, 2048).astype(np.float32)
        store.write_batch([_image(f"/p/{i}.jpg", rec.id, x[i]) for i in range(40)])
        rec = store.feature_set(FS)
        loaded = IndexCatalog(store, index="pgvector").get(rec, Metric())
        # Too long for pgvector's HNSW: an exact scan inside PostgreSQL, still correct.
        assert loaded.manifest["index"] == "pgvector exact scan"
        assert loaded.index.search(x[3], 1)[1][0, 0] == store.vectors(rec.id)[0][3]
        with pytest.raises(UnknownMetricError, match="use the exact index"):
            IndexCatalog(store, index="pgvector").get(rec, Metric("minkowski"))
        # auto: exact below the threshold; above it pgvector if it can index them, else a
        # FAISS index.
        assert IndexCatalog(store).spec_for(rec) is not None
        assert str(IndexCatalog(store, exact_max=10).spec_for(rec)) == \
            "OPQ32_128,IVF32,PQ32,RFlat"
    with Store.open(tmp_path / "s.db") as sqlite, pytest.raises(ConfigError, match="PostgreSQL"):
        IndexCatalog(sqlite, index="pgvector")


def test_whole_pipeline_on_postgresql(pg_url: str, tmp_path: Path, cache_dir: Path,
                                      tiny_registry: object) -> None:
    from fastapi.testclient import TestClient

    from semsearch.web.app import create_app

    folder = labeled_folder(tmp_path / "photos", 12)
    config = resolve({"db": pg_url, "cache_dir": str(cache_dir), "model": "tiny",
                      "batch_size": 4}, env={})
    with Session(config, registry=tiny_registry) as session:  # type: ignore[arg-type]
        report = session.index(str(folder))
        assert report.embedded == 12 and isinstance(session.store, PostgresStore)
        result = session.search(str(folder / "class0" / "img00.png"), k=3)
        assert len(result.hits) == 3 and result.hits[0].path.startswith(str(folder))
        info = session.info()
        assert info.db == redact(pg_url) and info.images == 12
        assert info.feature_sets[0].indexes and info.feature_sets[0].indexes[0].fresh
        # The index files of a PostgreSQL catalogue live in the cache folder, per catalogue.
        assert str(cache_dir) in info.feature_sets[0].indexes[0].path
        assert session.index(str(folder)).unchanged == 12
        client = TestClient(create_app(config, registry=tiny_registry,  # type: ignore[arg-type]
                                       session=session, allowed_hosts=("testserver",)))
        [collection] = client.get("/api/collections").json()
        first = result.hits[0].image_id
        reply = client.get(f"/api/collections/{collection['id']}/search",
                           params={"image_id": first, "k": 2})
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["hits"]) == 2
        assert client.get(f"/api/collections/{collection['id']}/map").status_code == 200
        assert session.remove(str(folder / "class1")) == 4
        assert session.info().images == 8


@pytest.mark.real
def test_command_line_with_a_postgresql_catalogue(pg_url: str, tmp_path: Path,
                                                  cache_dir: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil

    from tests.conftest import dataset

    from semsearch.cli import main

    monkeypatch.setenv("SEMSEARCH_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("SEMSEARCH_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    folder = tmp_path / "photos"
    for cls in ("banana", "arch"):
        (folder / cls).mkdir(parents=True)
        for image in sorted((dataset("iconic200") / cls).glob("*.jpg"))[:3]:
            shutil.copy(image, folder / cls / image.name)
    assert main(["index", str(folder), "--db", pg_url, "--model", "lite0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["embedded"] == 6
    query = sorted((folder / "arch").glob("*.jpg"))[0]
    assert main(["search", str(query), "--db", pg_url, "--model", "lite0", "-k", "2",
                 "--json"]) == 0
    assert [h["label"] for h in json.loads(capsys.readouterr().out)["hits"]] == ["arch"] * 2
    assert main(["info", "--db", pg_url]) == 0
    out = capsys.readouterr().out
    assert f"catalogue {redact(pg_url)}" in out and "6 vectors x 1280 dims" in out
