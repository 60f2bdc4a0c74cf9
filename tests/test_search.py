"""SearchService with the tiny network: queries by file, by indexed image, and staleness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import labeled_folder, make_image
from tests.rankings import assert_same_ranking

from semsearch.errors import NotIndexedError, QueryError
from semsearch.index.metric import METRICS, Metric
from semsearch.indexing.local import index_folder
from semsearch.query.service import ImageQuery, KnownImageQuery
from semsearch.session import Session


@pytest.fixture
def indexed(tiny_session: Session, gallery: Path) -> Session:
    index_folder(tiny_session.store, tiny_session.extractor(tiny_session.feature_set()),
                 gallery, batch_size=4)
    return tiny_session


def _record(session: Session):  # type: ignore[no-untyped-def]
    return session.indexed_feature_set(None)


@pytest.mark.parametrize("metric", METRICS)
def test_indexed_query_is_excluded_and_ranked(indexed: Session, gallery: Path,
                                             metric: str) -> None:
    service = indexed.search_service()
    query = service.resolve(str(gallery / "class0" / "img00.png"))
    assert isinstance(query, KnownImageQuery)
    result = service.search(query, feature_set=_record(indexed), metric=Metric(metric), k=5)
    assert len(result.hits) == 5
    assert query.image_id not in [h.image_id for h in result.hits]
    assert [h.rank for h in result.hits] == [1, 2, 3, 4, 5]
    distances = [h.distance for h in result.hits]
    assert distances == sorted(distances)
    assert all(0.0 <= h.score <= 1.0 for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_file_query_embeds_like_the_gallery(indexed: Session, gallery: Path,
                                            tmp_path: Path) -> None:
    service = indexed.search_service()
    copy = tmp_path / "copy.png"
    copy.write_bytes((gallery / "class1" / "img07.png").read_bytes())
    query = service.resolve(str(copy))
    assert isinstance(query, ImageQuery)
    result = service.search(query, feature_set=_record(indexed), metric=Metric(), k=3)
    top = result.hits[0]
    assert top.path == str(gallery / "class1" / "img07.png")
    assert top.distance < 1e-5 and top.score > 0.99
    by_bytes = service.search(ImageQuery(data=copy.read_bytes()), feature_set=_record(indexed),
                              metric=Metric(), k=3)
    assert [h.image_id for h in by_bytes.hits] == [h.image_id for h in result.hits]


def test_query_by_id(indexed: Session, gallery: Path) -> None:
    service = indexed.search_service()
    assert service.resolve("id:3") == KnownImageQuery(3)
    assert service.resolve("3") == KnownImageQuery(3)
    with pytest.raises(NotIndexedError):
        service.resolve("id:999")
    with pytest.raises(QueryError):
        service.resolve("no-such-file.jpg")
    with pytest.raises(QueryError):
        service.resolve(str(gallery))


def test_index_is_rebuilt_when_the_store_changes(indexed: Session, gallery: Path) -> None:
    service = indexed.search_service()
    record = _record(indexed)
    assert len(service.index_for(record, Metric()).index) == 12
    make_image(gallery / "class0" / "extra.png", seed=50)
    index_folder(indexed.store, indexed.extractor(record.feature_set), gallery)
    assert len(service.index_for(record, Metric()).index) == 13
    statuses = indexed.catalog.status(_record(indexed))
    assert [(s.metric, s.count, s.fresh) for s in statuses] == [("cosine", 13, True)]
    indexed.store.remove_under(str(gallery / "class0"))
    assert not indexed.catalog.status(_record(indexed))[0].fresh
    assert len(service.index_for(_record(indexed), Metric()).index) == 8


def test_damaged_index_file_is_rebuilt(indexed: Session) -> None:
    record = _record(indexed)
    loaded = indexed.catalog.get(record, Metric())
    (indexed.catalog.folder / loaded.manifest["file"]).write_bytes(b"garbage")
    again = indexed.catalog.get(record, Metric())
    assert len(again.index) == 12


def test_bad_query_image_is_a_clear_error(indexed: Session, tmp_path: Path) -> None:
    from semsearch.errors import BadImageError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    service = indexed.search_service()
    with pytest.raises(BadImageError):
        service.search(service.resolve(str(bad)), feature_set=_record(indexed), metric=Metric())


def test_empty_catalogue_says_what_to_do(tiny_session: Session) -> None:
    with pytest.raises(NotIndexedError, match="semsearch index"):
        tiny_session.indexed_feature_set(None)


def test_vectors_are_pooled_maps(indexed: Session, gallery: Path) -> None:
    extractor = indexed.extractor(indexed.feature_set(pool="avg"))
    pixels, size = extractor.decode(str(gallery / "class0" / "img00.png"))
    assert pixels.shape == (32, 32, 3) and size == (64, 48)
    maps = extractor.backbone.run(pixels[None])["head_act"]
    np.testing.assert_allclose(extractor.embed(pixels[None])[0], maps[0].mean(axis=(1, 2)),
                               rtol=1e-5)


def test_query_file_with_a_non_utf8_name(indexed: Session, gallery: Path, tmp_path: Path) -> None:
    import os

    raw = os.path.join(os.fsencode(tmp_path), b"q\xff.png")
    with open(raw, "wb") as fh:
        fh.write((gallery / "class2" / "img02.png").read_bytes())
    service = indexed.search_service()
    query = service.resolve(os.fsdecode(raw))
    result = service.search(query, feature_set=_record(indexed), metric=Metric(), k=1)
    assert result.query.endswith("q\\xff.png")
    assert result.hits[0].path == str(gallery / "class2" / "img02.png")


def test_index_of_another_catalogue_is_never_served(indexed: Session, gallery: Path,
                                                    tmp_path: Path) -> None:
    """A catalogue replaced by a new one at the same path must not reuse the old index,
    even when feature set, version and count happen to match."""
    from semsearch.store import Store

    service = indexed.search_service()
    old = service.index_for(_record(indexed), Metric())
    db = indexed.store.path
    indexed.store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    other = tmp_path / "other"
    for i in range(12):
        make_image(other / "x" / f"{i}.png", seed=100 + i)
    indexed.store = Store.open(db)
    indexed.catalog = type(indexed.catalog)(indexed.store)
    index_folder(indexed.store, indexed.extractor(indexed.feature_set()), other, batch_size=4)
    record = _record(indexed)
    assert (record.version, indexed.store.count_vectors(record.id)) == (
        old.manifest["vectors_version"], 12)
    assert not indexed.catalog.is_fresh(record, old.manifest)
    fresh = indexed.catalog.get(record, Metric())
    assert fresh.manifest["catalogue_id"] == indexed.store.catalogue_id


def test_changed_indexed_file_is_embedded_again_as_a_query(indexed: Session,
                                                           gallery: Path) -> None:
    service = indexed.search_service()
    target = gallery / "class0" / "img00.png"
    old_id = indexed.store.image_by_path(str(target)).id  # type: ignore[union-attr]
    target.write_bytes((gallery / "class1" / "img04.png").read_bytes())
    query = service.resolve(str(target))
    assert isinstance(query, ImageQuery) and query.exclude == old_id
    result = service.search(query, feature_set=_record(indexed), metric=Metric(), k=3)
    assert result.hits[0].path == str(gallery / "class1" / "img04.png")
    assert old_id not in [h.image_id for h in result.hits]


def test_deleted_files_are_not_returned(indexed: Session, gallery: Path) -> None:
    service = indexed.search_service()
    for i in (1, 4, 7, 10):
        (gallery / "class1" / f"img{i:02d}.png").unlink()
    result = service.search(KnownImageQuery(1), feature_set=_record(indexed), metric=Metric(),
                            k=11)
    assert len(result.hits) == 7  # 12 indexed, minus the query, minus 4 deleted
    assert all(Path(h.path).exists() for h in result.hits)


@pytest.mark.parametrize("text", ["id:99999999999999999999999", "\u00b2", "id:\u0663",
                                  "id:-1", "id:"])
def test_odd_ids_are_clear_errors(indexed: Session, text: str) -> None:
    with pytest.raises((QueryError, NotIndexedError)):
        indexed.search_service().resolve(text)


def test_fifo_query_is_refused_without_blocking(indexed: Session, tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(QueryError, match="not a regular file"):
        indexed.search_service().resolve(str(tmp_path / "pipe.jpg"))


def test_search_asks_for_more_when_nearest_files_are_gone(tiny_session: Session,
                                                         tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(40):
        make_image(root / "x" / f"{i:02d}.png", seed=200 + i)
    index_folder(tiny_session.store, tiny_session.extractor(tiny_session.feature_set()), root)
    service = tiny_session.search_service()
    record = _record(tiny_session)
    full = service.search(KnownImageQuery(1), feature_set=record, metric=Metric(), k=39)
    for hit in full.hits[:20]:  # more than the first fetch (k + 9) can make up for
        Path(hit.path).unlink()
    result = service.search(KnownImageQuery(1), feature_set=record, metric=Metric(), k=5)
    assert [h.image_id for h in result.hits] == [h.image_id for h in full.hits[20:25]]


def test_composite_feature_set_indexes_and_searches(tiny_session: Session,
                                                    gallery: Path, tmp_path: Path) -> None:
    from semsearch.featureset import FeatureSet

    fs = tiny_session.feature_set(model="tiny+tiny2", pool="gem")
    assert fs == FeatureSet.parse("tiny+tiny2@head_act/gem")
    extractor = tiny_session.extractor(fs)
    assert extractor.dim == 64 and extractor.preprocessing.count("+") == 1
    report = index_folder(tiny_session.store, extractor, gallery, batch_size=4)
    assert report.embedded == 12
    record = tiny_session.store.feature_set(fs)
    ids, vectors = tiny_session.store.vectors(record.id)
    # Each model's half is normalized on its own before the whole is.
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :32], axis=1), 2 ** -0.5, rtol=1e-5)
    single = tiny_session.extractor(tiny_session.feature_set(model="tiny", pool="gem"))
    first = single.embed_image(str(gallery / "class0" / "img00.png"))
    row = int(np.flatnonzero(ids == tiny_session.store.image_by_path(
        str(gallery / "class0" / "img00.png")).id)[0])  # type: ignore[union-attr]
    np.testing.assert_allclose(vectors[row, :32], first / np.linalg.norm(first) * 2 ** -0.5,
                               rtol=1e-4, atol=1e-6)
    copy = tmp_path / "copy.png"
    copy.write_bytes((gallery / "class2" / "img05.png").read_bytes())
    service = tiny_session.search_service()
    result = service.search(service.resolve(str(copy)), feature_set=record, metric=Metric(), k=2)
    assert result.hits[0].path == str(gallery / "class2" / "img05.png")
    assert result.hits[0].score > 0.99


@pytest.fixture
def clustered(tiny_session: Session, tmp_path: Path) -> Session:
    for i in range(30):
        make_image(tmp_path / "c" / f"k{i % 3}" / f"{i:02d}.png", seed=300 + i)
    index_folder(tiny_session.store, tiny_session.extractor(tiny_session.feature_set()),
                 tmp_path / "c", batch_size=8)
    return tiny_session


def test_expansion_searches_the_dba_gallery(clustered: Session) -> None:
    from semsearch.vectors import database_augmentation

    record = _record(clustered)
    service = clustered.search_service()
    result = service.search(KnownImageQuery(1), feature_set=record, metric=Metric(), k=10,
                            expand_k=5)
    assert result.metric == "cosine + DBA k=5"
    ids, vectors = clustered.store.vectors(record.id)
    dba = database_augmentation(vectors, k=5)
    sims = dba @ dba[list(ids).index(1)]
    expected = [i for i in np.argsort(-sims) if ids[i] != 1][:10]
    assert_same_ranking([h.image_id for h in result.hits], [1 - h.distance for h in result.hits],
                        ids[expected], sims[expected])
    plain = service.search(KnownImageQuery(1), feature_set=record, metric=Metric(), k=10)
    assert plain.metric == "cosine"
    statuses = {s.expansion for s in clustered.catalog.status(record)}
    assert statuses == {"", "database-side augmentation, k=5"}


def test_external_query_is_expanded_over_its_nearest_originals(clustered: Session) -> None:
    from semsearch.vectors import l2_normalize

    record = _record(clustered)
    loaded = clustered.catalog.get(record, Metric(), 5)
    ids, vectors = clustered.store.vectors(record.id)
    originals = l2_normalize(vectors)
    q = originals[3] * 0.7 + originals[20] * 0.3
    sims = originals @ (q / np.linalg.norm(q))
    top = np.argsort(-sims)[:4]  # k - 1 neighbours
    expected = q / np.linalg.norm(q) + (sims[top] ** 3) @ originals[top]
    np.testing.assert_allclose(loaded.expand(q), expected / np.linalg.norm(expected),
                               rtol=1e-4, atol=1e-6)


def test_expansion_is_cosine_only_and_capped(clustered: Session,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch.index.catalog as catalog

    record = _record(clustered)
    service = clustered.search_service()
    euclid = service.search(KnownImageQuery(1), feature_set=record, metric=Metric("euclidean"),
                            k=3, expand_k=5)
    assert euclid.metric == "euclidean"
    monkeypatch.setattr(catalog, "EXPAND_MAX", 10)
    capped = clustered.catalog.build(record, Metric(), 5)
    assert capped.expand_k == 0 and capped.base is None
    assert capped.manifest["expand_k"] == 5


def test_outside_query_goes_through_augmentation_in_search(clustered: Session,
                                                           tmp_path: Path) -> None:
    from semsearch.vectors import augment_query, database_augmentation

    record = _record(clustered)
    outsider = make_image(tmp_path / "outside.png", seed=999)
    service = clustered.search_service()
    result = service.search(service.resolve(str(outsider)), feature_set=record,
                            metric=Metric(), k=8, expand_k=5)
    ids, vectors = clustered.store.vectors(record.id)
    q = clustered.extractor(record.feature_set).embed_image(str(outsider))
    sims = database_augmentation(vectors, k=5) @ augment_query(q[None], vectors, k=5)[0]
    top = np.argsort(-sims)[:8]
    assert_same_ranking([h.image_id for h in result.hits], [1 - h.distance for h in result.hits],
                        ids[top], sims[top])
    plain = service.search(service.resolve(str(outsider)), feature_set=record,
                           metric=Metric(), k=8, expand_k=0)
    raw = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    top = np.argsort(-raw)[:8]
    assert_same_ranking([h.image_id for h in plain.hits], [1 - h.distance for h in plain.hits],
                        ids[top], raw[top])


def test_augmentation_on_an_empty_or_tiny_gallery(tiny_session: Session,
                                                  tmp_path: Path) -> None:
    one = make_image(tmp_path / "one" / "a" / "x.png", seed=1)
    extractor = tiny_session.extractor(tiny_session.feature_set())
    index_folder(tiny_session.store, extractor, tmp_path / "one")
    service = tiny_session.search_service()
    outsider = make_image(tmp_path / "q.png", seed=2)
    record = _record(tiny_session)
    found = service.search(service.resolve(str(outsider)), feature_set=record,
                           metric=Metric(), k=3, expand_k=10)
    assert [h.path for h in found.hits] == [str(one)]
    tiny_session.store.remove_under(str(tmp_path / "one"))
    empty = service.search(service.resolve(str(outsider)), feature_set=record,
                           metric=Metric(), k=3, expand_k=10)
    assert empty.hits == []


def test_composite_guards(tiny_session: Session) -> None:
    from semsearch.errors import FeatureSetError

    with pytest.raises(FeatureSetError, match="appears twice"):
        tiny_session.extractor(tiny_session.feature_set(model="tiny+tiny"))
    tiny = tiny_session.feature_set(model="tiny+tiny2", layer="block_act", pool="flat")
    assert tiny_session.extractor(tiny).dim == 16 * 8 * 8 + 16 * 10 * 10


def test_composite_flat_cap_counts_all_parts(tmp_path: Path, cache_dir: Path,
                                             tiny_registry) -> None:  # type: ignore[no-untyped-def]
    from semsearch.config import resolve
    from semsearch.errors import FeatureSetError

    config = resolve({"db": str(tmp_path / "c.db"), "cache_dir": str(cache_dir),
                      "flat_max_dims": 2000}, env={})
    with Session(config, registry=tiny_registry) as session:
        assert session.extractor(session.feature_set("tiny", "block_act", "flat")).dim == 1024
        with pytest.raises(FeatureSetError, match="above the cap of 2,000"):
            session.extractor(session.feature_set("tiny+tiny2", "block_act", "flat"))


def test_a_small_folder_is_searched_on_its_own_and_follows_changes(
        tiny_session: Session, tmp_path: Path) -> None:
    # A small collection beside a big one in the same catalogue: searching it must give
    # exactly what filtering an exhaustive search gives, before and after its files change.
    small = labeled_folder(tmp_path / "small", 6)
    big = labeled_folder(tmp_path / "big", 40, classes=4)
    for n, path in enumerate(sorted(big.rglob("*.png"))):  # not the small folder's pictures
        make_image(path, seed=1000 + n)
    session = tiny_session
    session.index(str(big))
    session.index(str(small))
    service = session.search_service()
    metric = session.metric()

    def check_within(query_id: int) -> int:
        record = session.indexed_feature_set(None)
        within = service.search(KnownImageQuery(query_id), feature_set=record, metric=metric,
                                k=3, within=str(small))
        everything = service.search(KnownImageQuery(query_id), feature_set=record,
                                    metric=metric, k=100)
        filtered = [h for h in everything.hits if h.path.startswith(str(small) + os.sep)][:3]
        # The folder's own index and the whole one are two computations of the distances.
        assert_same_ranking([h.image_id for h in within.hits],
                            [h.distance for h in within.hits],
                            [h.image_id for h in filtered], [h.distance for h in filtered])
        return len(within.hits)

    first = min(session.store.images_under(str(small)).values(), key=lambda r: r.id).id
    assert check_within(first) == 3
    assert service._subsets, "the folder was not searched on its own"
    # New content in the folder: re-indexed, and the folder's own index follows.
    target = sorted(small.rglob("*.png"))[-1]
    make_image(target, seed=555)
    session.index(str(small))
    check_within(first)
    # An image moved in from the big folder is found there too.
    moved = sorted(big.rglob("*.png"))[0]
    moved.rename(small / "class0" / "moved-in.png")
    session.index(str(small))
    session.index(str(big))
    check_within(first)
