"""The plan of an indexing run: bringing the catalogue up to date with a folder, files ->
decoded batches -> vectors -> store, whichever engine decodes and embeds.

Each batch is written in one store transaction, so an interrupted run resumes where it
stopped. Unchanged files are skipped by (path, size, mtime); moved or touched files are
recognised by content hash and re-pointed without being embedded again.

`IndexRun` holds what does not depend on where decoding and embedding happen (the plan
against the catalogue, the decisions content hashes allow, the writes and the report);
`indexing.local.index_folder` runs it on local threads, `indexing.ray_run` as a Ray
Data job."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from semsearch.embed.extractors import Embedder
from semsearch.errors import BadImageError
from semsearch.images import ImageFile, Scan, check_name, real_path, scan_images
from semsearch.store import ImageRecord, Move, NewImage, Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IndexReport:
    """What an `index_folder` run did."""

    root: str
    feature_sets: list[str]
    found: int = 0
    embedded: int = 0
    unchanged: int = 0
    moved: int = 0
    touched: int = 0
    removed: int = 0
    failed: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Undecodable:
    """A file that was read but cannot be decoded. If it used to hold other content, that
    content's stored image (`stale_id`) is gone and must be removed."""

    path: str
    reason: str
    stale_id: int | None


@dataclass(frozen=True)
class Content:
    """A file whose vectors are to be stored: what the catalogue records about it."""

    file: ImageFile
    sha256: str
    width: int
    height: int
    replaces: int | None
    new_path: bool  # the catalogue has nothing at this path


@dataclass(frozen=True)
class Decoded(Content):
    pixels: Any  # the extractor's decoded input: an array, or one per model of a composite


class Embed(NamedTuple):
    """A file's content must be embedded; its vectors take over stored image `replaces`
    (a moved file whose old row lacks this run's vectors), or make a new row (None)."""

    replaces: int | None


class _Plan:
    """What a run must do, and the content-hash lookups its decoding threads share."""

    def __init__(self, store: Store, fs_ids: list[int], root: str, scan: Scan) -> None:
        stored = store.images_under(root)
        # An image is done when every feature set of the run has its vector.
        self.with_vectors = set.intersection(*(store.image_ids_with_vectors(i) for i in fs_ids))
        files = scan.files
        # Paths that could not be looked at are not known to be gone: keep what is stored.
        seen = {f.path for f in files} | {path for path, _ in scan.problems}
        blind = [folder.rstrip(os.sep) + os.sep for folder in scan.unreadable]
        missing = [rec for path, rec in stored.items()
                   if path not in seen and not any(path.startswith(b) for b in blind)]
        self.missing_ids = {rec.id for rec in missing}
        # Decoding threads claim these with dict.pop, which is atomic, so one missing image
        # under root moves to at most one new path.
        self.by_hash: dict[str, ImageRecord] = {rec.sha256: rec for rec in missing}
        self.todo: list[tuple[ImageFile, ImageRecord | None]] = []
        self.unchanged = 0
        for f in files:
            rec = stored.get(f.path)
            if (rec is not None and rec.size == f.size and rec.mtime_ns == f.mtime_ns
                    and rec.id in self.with_vectors):
                self.unchanged += 1
            else:
                self.todo.append((f, rec))


def _certainly_gone(path: str) -> bool:
    """Gives whether a file is known not to exist: its folder is there and can be searched,
    and the file is not in it. An unreadable folder or an unmounted disk proves nothing."""
    folder = os.path.dirname(path)
    return (os.path.isdir(folder) and os.access(folder, os.X_OK)
            and not os.path.lexists(path))


class IndexRun:
    """One run over root (a folder or one file), whichever engine decodes and embeds: the
    scan and the plan against the catalogue, what content hashes decide, the writes (one
    store transaction each) and the report. Finish it with `finish`."""

    def __init__(self, store: Store, embedder: Embedder, root: str | os.PathLike[str]) -> None:
        self.started = time.perf_counter()
        root_path = real_path(root)
        check_name(root_path)
        if not os.path.exists(root_path):
            raise BadImageError(root_path, "no such file or folder")
        scan = scan_images(root_path)
        if not os.path.isdir(root_path) and not scan.files:
            raise BadImageError(*scan.problems[0])
        self.store = store
        self.root = root_path
        self.scan = scan
        self.fs_ids = [store.ensure_feature_set(fs, embedder.preprocessing, dim).id
                       for fs, dim in embedder.outputs]
        self.plan = _Plan(store, self.fs_ids, root_path, scan)
        self.report = IndexReport(root_path, [str(fs) for fs, _ in embedder.outputs],
                                  found=len(scan.files), unchanged=self.plan.unchanged)
        self.report.failed.extend(Skipped(path, reason)
                                  for path, reason in scan.problems + scan.links)
        self._consumed: set[int] = set()
        self._stale: set[int] = set()

    @property
    def todo(self) -> list[tuple[ImageFile, ImageRecord | None]]:
        """Gives the files to look at, each with what the catalogue holds at its path."""
        return self.plan.todo

    def known_content(self, rec: ImageRecord | None) -> str | None:
        """Gives the content hash with which the file at rec's path needs no embedding (it
        was only touched), or None."""
        return rec.sha256 if rec is not None and rec.id in self.plan.with_vectors else None

    def movable_hashes(self) -> set[str]:
        """Gives the content hashes of missing images that have this run's vectors: a file
        with one of them has moved, and may need no embedding."""
        return {sha for sha, rec in self.plan.by_hash.items()
                if rec.id in self.plan.with_vectors}

    def route(self, f: ImageFile, rec: ImageRecord | None, sha: str, size: int) -> Move | Embed:
        """Gives what a file's content (its hash and byte size) calls for: a Move of a stored
        image that has this run's vectors, or Embed. Claims a missing image at most once."""
        plan = self.plan
        if rec is not None and rec.sha256 == sha:
            if rec.id in plan.with_vectors:
                return Move(rec.id, f.path, size, f.mtime_ns, f.label, touched=True)
            return Embed(None)
        moved_from = plan.by_hash.pop(sha, None)
        if moved_from is None:
            return Embed(None)
        if moved_from.id in plan.with_vectors:
            return Move(moved_from.id, f.path, size, f.mtime_ns, f.label)
        return Embed(moved_from.id)

    def skip(self, path: str, reason: str, stale_id: int | None = None) -> None:
        """Records a file that cannot be used; stale_id is a stored image it used to hold
        (other content), now gone."""
        self.report.failed.append(Skipped(path, reason))
        if stale_id is not None:
            self._stale.add(stale_id)

    def write(self, items: Sequence[Content], sets: Sequence[npt.NDArray[np.float32]],
              moves: Sequence[Move]) -> None:
        """Writes files with their vectors (sets: one (len(items), dim) array per feature
        set) and moves in one store transaction. A file with a non-finite value is skipped."""
        report = self.report
        new: list[NewImage] = []
        if items:
            finite: npt.NDArray[np.bool_] = np.logical_and.reduce(
                [np.isfinite(vectors).all(axis=1) for vectors in sets])
            for i in np.flatnonzero(~finite):
                report.failed.append(Skipped(items[int(i)].file.path,
                                             "the model gave non-finite values for it"))
            kept = [d for i, d in enumerate(items) if finite[i]]
            sets = [vectors[finite] for vectors in sets]
            moved_in = self._moved_from_elsewhere(kept)
            new = [
                NewImage(d.file.path, d.file.size, d.file.mtime_ns, d.sha256, d.width, d.height,
                         d.file.label, {fs_id: sets[j][i] for j, fs_id in enumerate(self.fs_ids)},
                         d.replaces if d.replaces is not None else moved_in.get(d.file.path))
                for i, d in enumerate(kept)
            ]
        self.store.write_batch(new, list(moves))
        report.embedded += len(new)
        report.touched += sum(1 for m in moves if m.touched)
        report.moved += sum(1 for m in moves if not m.touched)
        report.moved += sum(1 for n in new if n.replaces is not None)
        self._consumed.update(m.image_id for m in moves)
        self._consumed.update(n.replaces for n in new if n.replaces is not None)

    def _moved_from_elsewhere(self, batch: list[Content]) -> dict[str, int]:
        # Files moved in from outside root: the catalogue holds their content at a path that
        # is certainly gone. Taking over such a row keeps its other feature sets' vectors.
        # Missing images under root are the decoding threads' to claim, not this lookup's.
        fresh = [d for d in batch if d.replaces is None and d.new_path]
        known = self.store.images_with_shas([d.sha256 for d in fresh]) if fresh else {}
        taken: dict[str, int] = {}
        for item in fresh:
            for candidate in known.get(item.sha256, []):
                if (candidate.id not in self._consumed
                        and candidate.id not in self.plan.missing_ids
                        and _certainly_gone(candidate.path)):
                    self._consumed.add(candidate.id)
                    taken[item.file.path] = candidate.id
                    break
        return taken

    def finish(self) -> IndexReport:
        """Removes what is gone, registers the collection, and gives the report."""
        plan = self.plan
        self.report.removed = self.store.remove_images(
            (plan.missing_ids - self._consumed) | self._stale)
        if os.path.isdir(self.root) and self.scan.files:
            self.store.add_collection(self.root)
        self.report.seconds = time.perf_counter() - self.started
        return self.report
