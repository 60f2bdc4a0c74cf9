"""Approximate indexes: factory strings, recall against exact search, re-ranking from the full
vectors on disk, IVF built from shards into on-disk inverted lists, and the automatic choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semsearch.errors import ConfigError, UnknownMetricError
from semsearch.featureset import FeatureSet
from semsearch.index import approx
from semsearch.index.approx import SearchParams
from semsearch.index.catalog import IndexCatalog
from semsearch.index.exact import ExactIndex
from semsearch.index.metric import Metric
from semsearch.index.source import StoreVectors
from semsearch.indexspec import IndexSpec
from semsearch.store import NewImage, Store

FS = FeatureSet("tiny", "head", "gem")


def _clustered(n: int, d: int = 32, seed: int = 3) -> np.ndarray:
    """Vectors in 40 clusters, like CNN features of a collection with 40 kinds of things."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 1, (40, d))
    x = centers[rng.integers(0, 40, n)] + rng.normal(0, 0.15, (n, d))
    return np.maximum(x, 0).astype(np.float32)


def _fill(store: Store, x: np.ndarray, start: int = 0) -> int:
    fs_id = store.ensure_feature_set(FS, "test", x.shape[1]).id
    for lo in range(0, len(x), 1000):
        store.write_batch([
            NewImage(f"/data/img{start + i:06d}.jpg", 1, 1, f"{start + i:064x}", 8, 8, "c",
                     {fs_id: x[i]}) for i in range(lo, min(lo + 1000, len(x)))])
    return fs_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "cat.db") as s:
        yield s


def _recall(index: object, exact: ExactIndex, q: np.ndarray, k: int = 10) -> float:
    _, want = exact.search(q, k)
    _, got = index.search(q, k)  # type: ignore[attr-defined]
    return float(np.mean([len(set(w) & set(g)) / k for w, g in zip(want, got, strict=True)]))


@pytest.mark.parametrize("text, expected", [
    ("Flat", "Flat"), ("flat", "Flat"), ("HNSW32", "HNSW32"), (" IVF4096, PQ32 ", "IVF4096,PQ32"),
    ("OPQ32_128,IVF4096,PQ32,RFlat", "OPQ32_128,IVF4096,PQ32,RFlat"),
    ("PCA64,HNSW16", "PCA64,HNSW16"),
])
def test_factory_strings_round_trip(text: str, expected: str) -> None:
    spec = IndexSpec.parse(text)
    assert str(spec) == expected and IndexSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, message", [
    ("", "needs a FAISS factory string"),
    ("IVF", "not a FAISS factory string"),
    ("HNSWxyz", "not a FAISS factory string"),
    ("IDMap,Flat", "managed by semsearch"),
    ("IVF64,Flat,Refine(Flat)", "managed by semsearch"),
])
def test_bad_factory_strings_say_what_works(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        IndexSpec.parse(text)


@pytest.mark.parametrize("spec, metric", [
    ("HNSW16", "cosine"), ("IVF32,Flat", "cosine"), ("IVF32,Flat", "euclidean"),
    ("IVF32,Flat", "ip"), ("OPQ8_32,IVF32,PQ8,RFlat", "cosine"),
    ("PCA16,IVF32,PQ8,RFlat", "sqeuclidean"),
])
def test_approximate_index_finds_what_exact_search_finds(store: Store, spec: str,
                                                         metric: str) -> None:
    x = _clustered(4000)
    fs_id = _fill(store, x)
    record = store.feature_sets()[0]
    m = Metric(metric)
    catalog = IndexCatalog(store, index=spec, params=SearchParams(nprobe=8))
    loaded = catalog.get(record, m)
    assert loaded.manifest["kind"] == "approximate" and loaded.manifest["index"] == spec
    ids, vectors = store.vectors(fs_id)
    exact = ExactIndex.build(vectors, ids, m)
    q = x[:50] * 0.95 + 0.02
    assert _recall(loaded.index, exact, q) >= 0.9
    # Distances are the metric's own: the same numbers exact search gives for the same ids.
    dist, found = loaded.index.search(q[:3], 5)
    for row in range(3):
        rows = np.searchsorted(ids, found[row])
        exact_d = exact.search(q[row], len(ids))
        lookup = dict(zip(exact_d[1][0].tolist(), exact_d[0][0].tolist(), strict=True))
        np.testing.assert_allclose(dist[row], [lookup[i] for i in ids[rows]], rtol=1e-3,
                                   atol=1e-3 if not spec.endswith("RFlat") and "PQ" in spec
                                   else 1e-4)
    # The recall the catalogue measured is saved, and `info` reads it back.
    assert loaded.manifest["recall_at_10"] >= 0.85
    [status] = catalog.status(record)
    assert status.index == spec and status.recall_at_10 == loaded.manifest["recall_at_10"]
    assert status.fresh and status.ram_bytes_per_vector and status.ram_bytes_per_vector > 0


def test_loads_from_disk_and_rebuilds_when_vectors_change(store: Store) -> None:
    x = _clustered(3000)
    _fill(store, x)
    record = store.feature_sets()[0]
    catalog = IndexCatalog(store, index="IVF16,Flat")
    first = catalog.get(record, Metric())
    again = IndexCatalog(store, index="IVF16,Flat").get(record, Metric())
    assert again.manifest["built_at"] == first.manifest["built_at"]  # read, not rebuilt
    np.testing.assert_array_equal(again.index.search(x[:5], 10)[1],
                                  first.index.search(x[:5], 10)[1])
    _fill(store, _clustered(100, seed=9), start=3000)
    record = store.feature_sets()[0]
    rebuilt = catalog.get(record, Metric())
    assert rebuilt.manifest["count"] == 3100 and len(rebuilt.index) == 3100
    # Only the newest version's files stay.
    names = sorted(p.name for p in catalog.folder.iterdir())
    assert not [n for n in names if f".v{record.version - 1}." in n], names


def test_ivf_built_from_shards_into_on_disk_lists_matches_in_memory(tmp_path: Path,
                                                                   store: Store) -> None:
    x = _clustered(5000)
    fs_id = _fill(store, x)
    source = StoreVectors(store, fs_id)
    spec = IndexSpec.parse("IVF32,Flat")
    params = SearchParams(nprobe=4)
    disk, files = approx.build(source, spec, Metric(), tmp_path / "d", "x", on_disk=True,
                               params=params, chunk=700)  # 8 shards
    memory, _ = approx.build(source, spec, Metric(), tmp_path / "m", "x", on_disk=False,
                             params=params, chunk=700)
    assert files.ivfdata and (tmp_path / "d" / files.ivfdata).stat().st_size > 5000 * 32 * 4
    assert not list((tmp_path / "d").glob("*shard*"))
    assert disk.ram_bytes() < memory.ram_bytes() / 10  # the lists stay on disk
    d1, i1 = disk.search(x[:20], 10)
    d2, i2 = memory.search(x[:20], 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-5, atol=1e-6)


def test_two_builds_at_once_keep_each_others_files(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The server and an indexer may build the same index at once: the build that ends
    # first must not delete the files the other is still writing.
    from semsearch.index import source

    x = _clustered(1500)
    _fill(store, x)
    record = store.feature_sets()[0]
    spec = IndexSpec.parse("HNSW16")
    chunks = source.StoreVectors.chunks
    nested: list[object] = []

    def interleaved(self: source.StoreVectors, size: int):  # type: ignore[no-untyped-def]
        for item in chunks(self, size):
            yield item
            if not nested:
                nested.append("started")
                nested.append(IndexCatalog(store).build_approximate(record, Metric(), spec))

    monkeypatch.setattr(source.StoreVectors, "chunks", interleaved)
    outer = IndexCatalog(store).build_approximate(record, Metric(), spec)
    assert nested and len(outer.index) == 1500
    monkeypatch.undo()
    # The later build's manifest wins; the earlier one's files went with it.
    again = IndexCatalog(store, index="HNSW16").get(record, Metric())
    assert again.manifest["built_at"] == outer.manifest["built_at"]
    named = set(outer.manifest["files"].values()) - {None}
    left = {p.name for p in IndexCatalog(store).folder.iterdir() if ".v" in p.name}
    assert left == named


def test_a_killed_builds_files_are_swept_by_the_next_build(store: Store) -> None:
    _fill(store, _clustered(800))
    record = store.feature_sets()[0]
    catalog = IndexCatalog(store, index="HNSW16")
    built = catalog.get(record, Metric())
    stem = built.manifest["files"]["index"].split(".v")[0]
    dead = catalog.folder / f"{stem}.v{record.version}.4194303-0badf00d.ids.npy"
    dead.write_bytes(b"half")  # no process 4194303 runs (above Linux's pid_max)
    _fill(store, _clustered(10, seed=5), start=800)
    catalog.get(store.feature_sets()[0], Metric())
    assert not dead.exists()


def test_catalogue_puts_big_ivf_lists_on_disk_when_asked(store: Store) -> None:
    _fill(store, _clustered(2000))
    record = store.feature_sets()[0]
    loaded = IndexCatalog(store, index="IVF8,Flat", on_disk="yes").get(record, Metric())
    assert loaded.manifest["on_disk"] and loaded.manifest["files"]["ivfdata"]
    reread = IndexCatalog(store, index="IVF8,Flat", on_disk="yes").get(record, Metric())
    assert reread.manifest["built_at"] == loaded.manifest["built_at"]
    assert reread.index.search(_clustered(1, seed=5), 3)[1].shape == (1, 3)


def test_search_params_change_the_search(store: Store) -> None:
    x = _clustered(4000)
    _fill(store, x)
    record = store.feature_sets()[0]
    low = IndexCatalog(store, index="IVF64,Flat", params=SearchParams(nprobe=1)).get(
        record, Metric())
    high = IndexCatalog(store, index="IVF64,Flat", params=SearchParams(nprobe=64)).get(
        record, Metric())
    assert low.index.applied == {"nprobe": 1} and high.index.applied == {"nprobe": 64}
    ids, vectors = store.vectors(record.id)
    exact = ExactIndex.build(vectors, ids, Metric())
    q = x[:100] + 0.05
    assert _recall(high.index, exact, q) == pytest.approx(1.0)
    assert _recall(low.index, exact, q) < _recall(high.index, exact, q)


def test_auto_is_exact_for_small_collections_and_ivf_above(store: Store) -> None:
    _fill(store, _clustered(3000))
    record = store.feature_sets()[0]
    assert IndexCatalog(store).spec_for(record).exact
    assert IndexCatalog(store).get(record, Metric()).manifest["kind"] == "exact"
    spec = IndexCatalog(store, exact_max=1000).spec_for(record)
    assert str(spec) == "IVF256,Flat"  # about 4 sqrt(3000), a power of two; 32-d: no codes
    # Long vectors get 32-byte OPQ codes re-ranked from disk, as benchmarks/ann.py chose.
    big = approx.auto_spec(1_000_000, 200_000, dim=1280)
    assert str(big) == "OPQ32_128,IVF4096,PQ32,RFlat" and big.refine and big.nlist == 4096
    assert str(approx.auto_spec(1_000_000, 200_000, dim=64)) == "IVF4096,Flat"


def test_what_an_approximate_index_cannot_do_is_said(store: Store) -> None:
    _fill(store, _clustered(100))
    record = store.feature_sets()[0]
    with pytest.raises(ConfigError, match="needs at least 256 vectors"):
        IndexCatalog(store, index="IVF256,Flat").get(record, Metric())
    with pytest.raises(UnknownMetricError, match="use the exact index"):
        IndexCatalog(store, index="HNSW16").get(record, Metric("minkowski"))
    with pytest.raises(ConfigError, match="cannot be built for 32-dimensional"):
        IndexCatalog(store, index="PQ7").get(record, Metric())


def test_recall_measure_leaves_the_query_itself_out() -> None:
    truth = np.array([[5, 1, 2], [6, 3, 4]])

    def answering(found: list[list[int]]):  # type: ignore[no-untyped-def]
        return lambda q, k: (None, np.array(found))

    queries, ids = np.zeros((2, 1), np.float32), np.array([5, 6])
    assert approx.measure_recall(answering([[5, 1, 2], [6, 3, 4]]), queries, ids, truth, 2) == 1
    assert approx.measure_recall(answering([[5, 1, 9], [6, 8, 4]]), queries, ids, truth, 2) == 0.5


def test_manifest_names_every_file(store: Store) -> None:
    _fill(store, _clustered(2000))
    record = store.feature_sets()[0]
    catalog = IndexCatalog(store, index="PCA16,IVF8,PQ4,RFlat")
    loaded = catalog.get(record, Metric())
    manifest = json.loads(Path(catalog.status(record)[0].path).read_text())
    for name in manifest["files"].values():
        if name:
            assert (catalog.folder / name).is_file()
    assert loaded.manifest["files"]["full"].endswith(".full.npy")
    # Re-ranking reads the full vectors: distances are exact, not PQ approximations.
    ids, vectors = store.vectors(record.id)
    d, found = loaded.index.search(vectors[:1], 1)
    assert found[0, 0] == ids[0] and d[0, 0] == pytest.approx(0.0, abs=1e-5)


def test_auto_above_the_threshold_picks_compressed_codes_for_long_vectors(
        store: Store) -> None:
    # Building it is covered by the OPQ/PQ/RFlat tests above on smaller codes: training
    # 32 sub-quantizers takes a minute even on a few thousand vectors.
    _fill(store, _clustered(1200, d=128))
    record = store.feature_sets()[0]
    assert str(IndexCatalog(store, exact_max=1000).spec_for(record)) == \
        "OPQ32_128,IVF128,PQ32,RFlat"
