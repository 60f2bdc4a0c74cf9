"""Bringing the catalogue up to date with a folder: files -> decoded batches -> vectors ->
store.

Decoding runs ahead of the model on a thread pool (PIL and ONNX Runtime release the GIL);
each batch is written in one store transaction, so an interrupted run resumes where it
stopped. Unchanged files are skipped by (path, size, mtime); moved or touched files are
recognised by content hash and re-pointed without being embedded again."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.config import cores_or
from semsearch.errors import BadImageError
from semsearch.features import Embedder
from semsearch.images import ImageFile, Scan, check_name, read_bytes, scan_images
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
class _Undecodable:
    """A file that was read but cannot be decoded. If it used to hold other content, that
    content's stored image (`stale_id`) is gone and must be removed."""

    path: str
    reason: str
    stale_id: int | None


@dataclass(frozen=True)
class _Decoded:
    file: ImageFile
    sha256: str
    pixels: Any  # the extractor's decoded input: an array, or one per model of a composite
    width: int
    height: int
    replaces: int | None
    new_path: bool  # the catalogue has nothing at this path


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


def _prepare(
    extractor: Embedder, plan: _Plan, f: ImageFile, rec: ImageRecord | None
) -> _Decoded | Move | _Undecodable:
    check_name(f.path)
    data = read_bytes(f.path)
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    replaces: int | None = None
    if rec is not None and rec.sha256 == sha:
        if rec.id in plan.with_vectors:
            return Move(rec.id, f.path, size, f.mtime_ns, f.label, touched=True)
    else:
        moved_from = plan.by_hash.pop(sha, None)
        if moved_from is not None:
            if moved_from.id in plan.with_vectors:
                return Move(moved_from.id, f.path, size, f.mtime_ns, f.label)
            replaces = moved_from.id
    try:
        pixels, (width, height) = extractor.decode(data, name=f.path)
    except BadImageError as exc:
        stale = rec.id if rec is not None and rec.sha256 != sha else None
        return _Undecodable(exc.path, exc.reason, stale)
    return _Decoded(ImageFile(f.path, size, f.mtime_ns), sha, pixels, width, height, replaces,
                    rec is None)


def index_folder(
    store: Store,
    extractor: Embedder,
    root: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress | None = None,
) -> IndexReport:
    """Brings the store's vectors for root (a folder or one file) up to date with the disk,
    for every feature set the extractor gives, and gives a report. Bad files are skipped and
    listed; they never stop the run."""
    started = time.perf_counter()
    root_path = os.path.realpath(os.fspath(root))
    check_name(root_path)
    if not os.path.exists(root_path):
        raise BadImageError(root_path, "no such file or folder")
    scan = scan_images(root_path)
    if not os.path.isdir(root_path) and not scan.files:
        raise BadImageError(*scan.problems[0])
    fs_ids = [store.ensure_feature_set(fs, extractor.preprocessing, dim).id
              for fs, dim in extractor.outputs]
    plan = _Plan(store, fs_ids, root_path, scan)
    report = IndexReport(root_path, [str(fs) for fs, _ in extractor.outputs],
                         found=len(scan.files), unchanged=plan.unchanged)
    report.failed.extend(Skipped(path, reason) for path, reason in scan.problems)
    consumed: set[int] = set()
    stale: set[int] = set()
    decoded: list[_Decoded] = []
    moves: list[Move] = []
    done = 0

    def flush() -> None:
        nonlocal decoded, moves
        new: list[NewImage] = []
        if decoded:
            sets = extractor.embed_sets([d.pixels for d in decoded])
            finite: npt.NDArray[np.bool_] = np.logical_and.reduce(
                [np.isfinite(vectors).all(axis=1) for vectors in sets])
            for i in np.flatnonzero(~finite):
                report.failed.append(Skipped(decoded[i].file.path,
                                             "the model gave non-finite values for it"))
            decoded = [d for i, d in enumerate(decoded) if finite[i]]
            sets = [vectors[finite] for vectors in sets]
            moved_in = _moved_from_elsewhere(decoded)
            new = [
                NewImage(d.file.path, d.file.size, d.file.mtime_ns, d.sha256, d.width, d.height,
                         d.file.label, {fs_id: sets[j][i] for j, fs_id in enumerate(fs_ids)},
                         d.replaces if d.replaces is not None else moved_in.get(d.file.path))
                for i, d in enumerate(decoded)
            ]
        store.write_batch(new, moves)
        report.embedded += len(new)
        report.touched += sum(1 for m in moves if m.touched)
        report.moved += sum(1 for m in moves if not m.touched)
        report.moved += sum(1 for n in new if n.replaces is not None)
        consumed.update(m.image_id for m in moves)
        consumed.update(n.replaces for n in new if n.replaces is not None)
        decoded, moves = [], []

    def _moved_from_elsewhere(batch: list[_Decoded]) -> dict[str, int]:
        # Files moved in from outside root: the catalogue holds their content at a path that
        # is certainly gone. Taking over such a row keeps its other feature sets' vectors.
        # Missing images under root are the decoding threads' to claim, not this lookup's.
        fresh = [d for d in batch if d.replaces is None and d.new_path]
        known = store.images_with_shas([d.sha256 for d in fresh]) if fresh else {}
        taken: dict[str, int] = {}
        for item in fresh:
            for candidate in known.get(item.sha256, []):
                if (candidate.id not in consumed and candidate.id not in plan.missing_ids
                        and _certainly_gone(candidate.path)):
                    consumed.add(candidate.id)
                    taken[item.file.path] = candidate.id
                    break
        return taken

    n_workers = cores_or(workers)
    total = len(plan.todo)
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="decode") as pool_:
        pending: deque[tuple[ImageFile, Future[_Decoded | Move | _Undecodable]]] = deque()
        todo = iter(plan.todo)
        ahead = 2 * batch_size + n_workers

        def submit_more() -> None:
            while len(pending) < ahead:
                item = next(todo, None)
                if item is None:
                    return
                pending.append((item[0], pool_.submit(_prepare, extractor, plan, *item)))

        submit_more()
        while pending:
            f, future = pending.popleft()
            submit_more()
            try:
                result = future.result()
            except BadImageError as exc:
                report.failed.append(Skipped(exc.path, exc.reason))
                log.warning("skipping %s: %s", exc.path, exc.reason)
            else:
                if isinstance(result, Move):
                    moves.append(result)
                elif isinstance(result, _Undecodable):
                    report.failed.append(Skipped(result.path, result.reason))
                    if result.stale_id is not None:
                        stale.add(result.stale_id)
                else:
                    decoded.append(result)
            done += 1
            if len(decoded) >= batch_size or len(moves) >= 4 * batch_size:
                flush()
                if progress:
                    progress(done, total)
        if decoded or moves:
            flush()
    report.removed = store.remove_images((plan.missing_ids - consumed) | stale)
    if os.path.isdir(root_path) and scan.files:
        store.add_collection(root_path)
    if progress:
        progress(total, total)
    report.seconds = time.perf_counter() - started
    return report
