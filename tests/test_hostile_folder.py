"""Indexing a folder of hostile files: decompression bombs, huge declared sizes, a sparse
file of gigabytes, empty and cut files, symlink loops, links to folders, unreadable files,
names that are not UTF-8, very long names and paths longer than the system allows. The run
finishes, and every candidate file is accounted for: indexed, or skipped with a reason."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.conftest import make_image
from tests.test_fuzz import _png_claiming, mutated

from semsearch.images import is_supported, printable
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport
from semsearch.session import Session


def _index(session: Session, root: Path) -> IndexReport:
    extractor = session.extractor(session.feature_set())
    return index_folder(session.store, extractor, root, batch_size=4, workers=2)


def candidates(root: Path) -> tuple[set[str], set[str]]:
    """Gives, found independently of semsearch, the paths the run must account for: every
    non-hidden entry with an image suffix (files, links, whatever they point to) and every
    link to a folder; and the folders that cannot be listed."""
    found: set[str] = set()
    unlistable: set[str] = set()

    def on_error(exc: OSError) -> None:
        unlistable.add(printable(str(exc.filename)))

    for dirpath, dirnames, filenames in os.walk(str(root), onerror=on_error):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            if name in dirnames and os.path.islink(path):
                found.add(printable(path))
            elif name in filenames and not name.startswith(".") and is_supported(name):
                found.add(printable(path))
    return found, unlistable


def assert_accounted(session: Session, root: Path, report: IndexReport) -> dict[str, str]:
    """Checks that every candidate under root is indexed or skipped with a reason, never
    both; gives the skipped ones' reasons by path."""
    found, unlistable = candidates(root)
    indexed = set(session.store.images_under(str(root)))
    skipped = {s.path: s.reason for s in report.failed}
    assert all(reason.strip() for reason in skipped.values())
    assert not indexed & set(skipped)
    assert found - indexed - set(skipped) == set(), "files neither indexed nor skipped"
    assert unlistable <= set(skipped)
    assert indexed | set(skipped) <= found | unlistable
    return skipped


def _deep_folder(root: Path, levels: int) -> str:
    """Makes a chain of folders whose full path is longer than PATH_MAX, with an image at
    the bottom, working through directory descriptors; gives the first folder's path."""
    name = "d" * 200
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        image = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with os.fdopen(image, "wb") as fh:
            Image.new("RGB", (40, 30), (200, 10, 10)).save(fh, format="PNG")
    finally:
        os.close(fd)
    return str(root / name)


def _unreadable(path: Path) -> str | None:
    """Makes a file at path that cannot be read, and gives the reason expected; None as
    root, who reads any file whatever its mode (test_images checks that case as user
    nobody)."""
    if os.geteuid() == 0:
        return None
    make_image(path, seed=9)
    path.chmod(0)
    return "Permission denied"


def test_every_hostile_file_is_indexed_or_skipped_with_a_reason(tiny_session: Session,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    good = [make_image(root / "plain" / f"good{i}.png", seed=i) for i in range(3)]
    odd = root / "odd"
    odd.mkdir()
    (odd / "empty.jpg").write_bytes(b"")
    (odd / "cut.jpg").write_bytes(make_image(odd / "whole.jpg", seed=7,
                                             size=(300, 200)).read_bytes()[:500])
    Image.new("L", (20000, 20000)).save(odd / "bomb.png")  # 400 MP in a few hundred kB
    (odd / "claims-60000x60000.png").write_bytes(_png_claiming(60000, 60000))
    (odd / "claims-2147483647x1.png").write_bytes(_png_claiming(2**31 - 1, 1))
    with open(odd / "sparse-3GB.tif", "wb") as fh:
        fh.truncate(3 << 30)  # sparse: no disk used, but reading it whole would be 3 GB
    (odd / "not-an-image.gif").write_text("<html>hello</html>")
    (odd / "loop-a.jpg").symlink_to(odd / "loop-b.jpg")
    (odd / "loop-b.jpg").symlink_to(odd / "loop-a.jpg")
    (odd / "self.png").symlink_to(odd / "self.png")
    (odd / "gone.png").symlink_to(odd / "nowhere.png")
    (odd / "up").symlink_to(root)  # a folder loop
    (odd / "alias.png").symlink_to(good[0])
    hidden = make_image(root / ".hidden" / "h.png", seed=21)
    (odd / "to-hidden.png").symlink_to(hidden)
    (odd / "elsewhere.png").symlink_to(make_image(tmp_path / "private" / "p.png", seed=20))
    os.mkfifo(odd / "pipe.webp")
    reason_unreadable = _unreadable(odd / "secret.png")
    bad_name = os.path.join(os.fsencode(odd), b"caf\xe9.png")
    with open(bad_name, "wb") as fh:
        fh.write(good[1].read_bytes())
    long_name = make_image(odd / ("n" * 250 + ".png"), seed=11)
    markup = make_image(odd / "<img src=x onerror=alert(1)>\n\"'.png", seed=12)
    upper = make_image(odd / "SHOUT.JPEG", seed=13, fmt="JPEG")
    deep = _deep_folder(odd, levels=22)

    report = _index(tiny_session, root)
    skipped = assert_accounted(tiny_session, root, report)

    indexed = set(tiny_session.store.images_under(str(root)))
    assert {str(p) for p in good + [long_name, markup, upper]} | {str(odd / "whole.jpg")} \
        == indexed
    by_name = {os.path.basename(p): r for p, r in skipped.items()}
    assert by_name["empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in by_name["cut.jpg"] or "corrupt" in by_name["cut.jpg"]
    assert "too large" in by_name["bomb.png"] or "MP" in by_name["bomb.png"]
    for claim in ("claims-60000x60000.png", "claims-2147483647x1.png"):
        assert "too large" in by_name[claim] or "MP" in by_name[claim], by_name[claim]
    assert "not read" in by_name["sparse-3GB.tif"]
    assert "not an image" in by_name["not-an-image.gif"]
    assert by_name["loop-a.jpg"] == by_name["loop-b.jpg"] == by_name["self.png"] \
        == "symlink loop"
    assert by_name["gone.png"] == "broken symlink"
    assert "not followed" in by_name["up"]
    assert "indexed under its own path" in by_name["alias.png"]
    assert "not indexed (hidden" in by_name["to-hidden.png"]
    assert "outside the folder, not followed" in by_name["elsewhere.png"]
    assert by_name["pipe.webp"] == "not a regular file"
    if reason_unreadable:
        assert reason_unreadable in by_name["secret.png"]
    assert "not valid UTF-8" in by_name["caf\\xe9.png"]
    assert any("File name too long" in r and p.startswith(deep) for p, r in skipped.items())

    # A second run changes nothing and skips the same files.
    again = _index(tiny_session, root)
    assert (again.embedded, again.unchanged) == (0, len(indexed))
    assert {s.path for s in again.failed} == set(skipped)
    shutil.rmtree(root)  # the deep chain needs descriptor-based removal, which rmtree does


@settings(max_examples=int(os.environ.get("SEMSEARCH_FUZZ_FOLDERS", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(files=st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",),
                                                       blacklist_characters="/\x00"),
                                        min_size=1, max_size=40),
                                st.sampled_from((".jpg", ".png", ".gif", ".webp", ".tif")),
                                mutated()),
                      min_size=1, max_size=8))
def test_a_folder_of_mutated_files_is_fully_accounted_for(
        tiny_session: Session, files: list[tuple[str, str, bytes]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-folder-"))
    try:
        for n, (stem, suffix, data) in enumerate(files):
            name = f"{n}-{stem}"[:200] + suffix
            (root / name).write_bytes(data)
        report = _index(tiny_session, root)
        assert_accounted(tiny_session, root, report)
        ids, matrix = tiny_session.store.vectors(
            tiny_session.store.feature_set(tiny_session.feature_set()).id)
        assert np.isfinite(matrix).all()
    finally:
        shutil.rmtree(root)
