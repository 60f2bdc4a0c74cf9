"""Indexing with the tiny network: incremental runs, moves, deletions, bad files, and two
feature sets side by side."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import make_image

from semsearch.featureset import FeatureSet
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport
from semsearch.session import Session


def _index(session: Session, root: Path, fs: FeatureSet | None = None) -> IndexReport:
    extractor = session.extractor(fs or session.feature_set())
    return index_folder(session.store, extractor, root, batch_size=4, workers=2)


def _vectors(session: Session, fs: FeatureSet | None = None) -> dict[str, np.ndarray]:
    record = session.store.feature_set(fs or session.feature_set())
    ids, matrix = session.store.vectors(record.id)
    paths = session.store.images(ids.tolist())
    return {paths[int(i)].path: matrix[n] for n, i in enumerate(ids)}


def test_first_run_embeds_everything_with_labels(tiny_session: Session, gallery: Path) -> None:
    report = _index(tiny_session, gallery)
    assert (report.found, report.embedded, report.unchanged, report.failed) == (12, 12, 0, [])
    rows = tiny_session.store.images_under(str(gallery))
    assert sorted({r.label for r in rows.values()}) == ["class0", "class1", "class2"]
    assert all(r.width == 64 and r.height == 48 for r in rows.values())
    assert all(len(r.sha256) == 64 for r in rows.values())


def test_second_run_skips_unchanged_files(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    before = _vectors(tiny_session)
    report = _index(tiny_session, gallery)
    assert (report.embedded, report.unchanged, report.moved, report.removed) == (0, 12, 0, 0)
    after = _vectors(tiny_session)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[p], after[p]) for p in before)


def test_changed_file_is_embedded_again(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    target = gallery / "class0" / "img00.png"
    old = _vectors(tiny_session)[str(target)]
    make_image(target, seed=99)
    report = _index(tiny_session, gallery)
    assert (report.embedded, report.unchanged) == (1, 11)
    assert not np.allclose(old, _vectors(tiny_session)[str(target)])


def test_touched_file_is_not_embedded_again(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    target = gallery / "class1" / "img01.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = _index(tiny_session, gallery)
    assert (report.embedded, report.touched, report.moved, report.unchanged) == (0, 1, 0, 11)
    assert _index(tiny_session, gallery).unchanged == 12


def test_renamed_file_keeps_its_id_and_vector(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    src, dst = gallery / "class0" / "img03.png", gallery / "class2" / "renamed.png"
    before = tiny_session.store.image_by_path(str(src))
    assert before is not None
    vector = _vectors(tiny_session)[str(src)]
    shutil.move(src, dst)
    report = _index(tiny_session, gallery)
    assert (report.embedded, report.moved, report.removed) == (0, 1, 0)
    after = tiny_session.store.image_by_path(str(dst))
    assert after is not None and after.id == before.id and after.label == "class2"
    assert tiny_session.store.image_by_path(str(src)) is None
    assert np.array_equal(_vectors(tiny_session)[str(dst)], vector)


def test_deleted_file_is_removed(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    (gallery / "class2" / "img05.png").unlink()
    report = _index(tiny_session, gallery)
    assert (report.removed, report.unchanged) == (1, 11)
    assert tiny_session.store.count_images() == 11
    assert len(_vectors(tiny_session)) == 11


def test_bad_files_are_skipped_listed_and_harmless(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    before = _vectors(tiny_session)
    bad = gallery / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("hello")
    good = make_image(bad / "good.jpg", seed=5, size=(300, 200))
    (bad / "cut.jpg").write_bytes(good.read_bytes()[:400])
    report = _index(tiny_session, gallery)
    reasons = {Path(s.path).name: s.reason for s in report.failed}
    assert set(reasons) == {"empty.jpg", "text.png", "cut.jpg"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["text.png"]
    assert report.embedded == 1 and report.unchanged == 12
    after = _vectors(tiny_session)
    assert all(np.array_equal(before[p], after[p]) for p in before)
    assert str(good) in after


def test_second_feature_set_leaves_the_first_untouched(tiny_session: Session,
                                                       gallery: Path) -> None:
    first = tiny_session.feature_set()
    second = tiny_session.feature_set(layer="block_act", pool="gem")
    _index(tiny_session, gallery, first)
    before = _vectors(tiny_session, first)
    version = tiny_session.store.feature_set(first).version
    report = _index(tiny_session, gallery, second)
    assert report.embedded == 12
    assert tiny_session.store.feature_set(first).version == version
    after = _vectors(tiny_session, first)
    assert all(np.array_equal(before[p], after[p]) for p in before)
    assert len(_vectors(tiny_session, second)[next(iter(before))]) == 16


def test_moved_file_without_this_feature_set_is_embedded_and_repointed(
        tiny_session: Session, gallery: Path) -> None:
    first = tiny_session.feature_set()
    second = tiny_session.feature_set(pool="max")
    _index(tiny_session, gallery, first)
    src, dst = gallery / "class0" / "img00.png", gallery / "class0" / "moved.png"
    image_id = tiny_session.store.image_by_path(str(src)).id  # type: ignore[union-attr]
    shutil.move(src, dst)
    report = _index(tiny_session, gallery, second)
    assert report.embedded == 12 and report.moved == 1
    assert tiny_session.store.image_by_path(str(dst)).id == image_id  # type: ignore[union-attr]
    # The first feature set's vector follows the image to its new path.
    assert str(dst) in _vectors(tiny_session, first)


def test_single_file_can_be_indexed(tiny_session: Session, gallery: Path) -> None:
    report = _index(tiny_session, gallery / "class1" / "img04.png")
    assert (report.found, report.embedded) == (1, 1)


def test_non_utf8_file_name_is_skipped_with_a_printable_reason(tiny_session: Session,
                                                               gallery: Path) -> None:
    raw = os.path.join(os.fsencode(gallery / "class0"), b"bad\xff.png")
    with open(raw, "wb") as fh:
        fh.write((gallery / "class0" / "img00.png").read_bytes())
    report = _index(tiny_session, gallery)
    assert report.embedded == 12
    [skipped] = report.failed
    assert skipped.path.endswith("bad\\xff.png") and "UTF-8" in skipped.reason
    skipped.path.encode("utf-8")  # safe to print and to put in JSON


def test_unlistable_folder_keeps_what_is_stored(tiny_session: Session, gallery: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch.indexing.plan
    from semsearch.images import Scan, scan_images

    _index(tiny_session, gallery)
    hidden = str(gallery / "class1")
    full = scan_images(gallery)
    # What scan_images gives when class1 cannot be listed (test_scan_reports_unlistable_
    # folders checks that it does); root could list it, so the scan is staged here.
    staged = Scan([f for f in full.files if not f.path.startswith(hidden + os.sep)],
                  [(hidden, "cannot list folder: Permission denied")], [hidden])
    monkeypatch.setattr(semsearch.indexing.plan, "scan_images", lambda root: staged)
    report = _index(tiny_session, gallery)
    assert report.removed == 0 and tiny_session.store.count_images() == 12
    assert [s.reason for s in report.failed] == ["cannot list folder: Permission denied"]


def test_scan_reports_unlistable_folders() -> None:
    import shutil
    import tempfile

    from semsearch.images import scan_images

    top = Path(tempfile.mkdtemp(prefix="semsearch-scan-"))
    try:
        top.chmod(0o755)
        make_image(top / "open" / "a.png", seed=1)
        make_image(top / "shut" / "b.png", seed=2)
        (top / "shut").chmod(0)
        as_root = os.geteuid() == 0
        try:
            if as_root:
                os.seteuid(65534)  # root lists any folder; look as user nobody
            scan = scan_images(top)
        finally:
            if as_root:
                os.seteuid(0)
        assert [Path(f.path).name for f in scan.files] == ["a.png"]
        assert scan.unreadable == [str(top / "shut")]
        assert scan.problems == [(str(top / "shut"), "cannot list folder: Permission denied")]
    finally:
        (top / "shut").chmod(0o755)
        shutil.rmtree(top)


def test_fifo_and_broken_link_are_listed(tiny_session: Session, gallery: Path) -> None:
    os.mkfifo(gallery / "class0" / "pipe.jpg")
    (gallery / "class0" / "gone.png").symlink_to(gallery / "nowhere.png")
    report = _index(tiny_session, gallery)
    reasons = {Path(s.path).name: s.reason for s in report.failed}
    assert reasons == {"pipe.jpg": "not a regular file", "gone.png": "broken symlink"}
    assert report.embedded == 12


def test_symlinks_do_not_duplicate_images(tiny_session: Session, gallery: Path,
                                          tmp_path: Path) -> None:
    link = tmp_path / "gallery-link"
    link.symlink_to(gallery)
    (gallery / "class0" / "alias.png").symlink_to(gallery / "class1" / "img01.png")
    assert _index(tiny_session, link).embedded == 12
    again = _index(tiny_session, gallery)
    assert (again.embedded, again.unchanged) == (0, 12)
    assert tiny_session.store.count_images() == 12


def test_file_overwritten_with_garbage_loses_its_old_vector(tiny_session: Session,
                                                            gallery: Path) -> None:
    _index(tiny_session, gallery)
    target = gallery / "class2" / "img08.png"
    target.write_bytes(b"no longer an image")
    report = _index(tiny_session, gallery)
    assert [Path(s.path).name for s in report.failed] == ["img08.png"]
    assert report.removed == 1
    assert tiny_session.store.image_by_path(str(target)) is None


def test_move_into_another_indexed_folder_is_recognised(tiny_session: Session,
                                                        gallery: Path) -> None:
    _index(tiny_session, gallery)
    src, dst = gallery / "class0" / "img06.png", gallery / "class1" / "arrived.png"
    image_id = tiny_session.store.image_by_path(str(src)).id  # type: ignore[union-attr]
    shutil.move(src, dst)
    report = _index(tiny_session, gallery / "class1")  # only the destination is re-indexed
    assert report.embedded == 1
    assert tiny_session.store.image_by_path(str(src)) is None
    assert tiny_session.store.image_by_path(str(dst)).id == image_id  # type: ignore[union-attr]
    assert tiny_session.store.count_images() == 12


def test_move_plus_copy_keeps_both_files(tiny_session: Session, gallery: Path) -> None:
    _index(tiny_session, gallery)
    src = gallery / "class0" / "img00.png"
    image_id = tiny_session.store.image_by_path(str(src)).id  # type: ignore[union-attr]
    shutil.move(src, gallery / "class0" / "new1.png")
    shutil.copy(gallery / "class0" / "new1.png", gallery / "class0" / "new2.png")
    report = _index(tiny_session, gallery)
    assert (report.moved, report.embedded, report.removed) == (1, 1, 0)
    assert tiny_session.store.count_images() == 13
    ids = {tiny_session.store.image_by_path(str(gallery / "class0" / n)).id  # type: ignore[union-attr]
           for n in ("new1.png", "new2.png")}
    assert image_id in ids and len(ids) == 2
    assert _index(tiny_session, gallery).unchanged == 13


def test_non_finite_vector_skips_that_file_only(tiny_session: Session, gallery: Path) -> None:
    from semsearch.embed.extractors import FeatureExtractor

    real = tiny_session.extractor(tiny_session.feature_set())

    class NaNForBlack:
        """Test double: the real tiny backbone, but NaN for an all-black image."""

        layers = real.backbone.layers

        def output_shape(self, layer: str) -> tuple[int, ...]:
            return real.backbone.output_shape(layer)

        def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
            out = real.backbone.run(images)
            for name in out:
                out[name][images.reshape(len(images), -1).max(axis=1) == 0] = np.nan
            return out

    from PIL import Image

    Image.new("RGB", (40, 40)).save(gallery / "class0" / "black.png")
    extractor = FeatureExtractor(real.spec, real.feature_set, NaNForBlack())
    report = index_folder(tiny_session.store, extractor, gallery, batch_size=4)
    assert report.embedded == 12
    assert [(Path(s.path).name, s.reason) for s in report.failed] == [
        ("black.png", "the model gave non-finite values for it")]


def test_stored_size_is_the_full_picture_size(tiny_session: Session, tmp_path: Path) -> None:
    big = make_image(tmp_path / "photos" / "a" / "big.jpg", seed=3, size=(3000, 2000))
    _index(tiny_session, tmp_path / "photos")
    record = tiny_session.store.image_by_path(str(big))
    assert record is not None and (record.width, record.height) == (3000, 2000)


def test_moves_and_touches_keep_indexes_fresh(tiny_session: Session, gallery: Path) -> None:
    from semsearch.index.metric import Metric

    first = tiny_session.feature_set()
    other = tiny_session.feature_set(pool="max")
    _index(tiny_session, gallery, first)
    _index(tiny_session, gallery / "class2", other)
    before = {fs: tiny_session.store.feature_set(fs).version for fs in (first, other)}
    tiny_session.catalog.get(tiny_session.store.feature_set(first), Metric())
    target = gallery / "class1" / "img01.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    shutil.move(gallery / "class0" / "img03.png", gallery / "class0" / "renamed.png")
    report = _index(tiny_session, gallery, first)
    assert (report.touched, report.moved, report.embedded) == (1, 1, 0)
    after = {fs: tiny_session.store.feature_set(fs).version for fs in (first, other)}
    assert after == before
    record = tiny_session.store.feature_set(first)
    manifest = tiny_session.catalog._read_manifest(
        tiny_session.catalog.manifest_path(record, Metric()))
    assert tiny_session.catalog.is_fresh(record, manifest)
    # Removing images that only the first feature set has leaves the other's version alone.
    tiny_session.store.remove_under(str(gallery / "class0"))
    assert tiny_session.store.feature_set(first).version > before[first]
    assert tiny_session.store.feature_set(other).version == before[other]
