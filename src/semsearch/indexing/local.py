"""The local engine: decoding runs ahead of the model on a thread pool (PIL and ONNX Runtime
release the GIL), and each batch is written in one store transaction."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from semsearch.config import cores_or
from semsearch.embed.extractors import Embedder
from semsearch.errors import BadImageError
from semsearch.images import ImageFile, check_name, file_byte_cap, read_bytes
from semsearch.indexing.plan import (
    Decoded,
    IndexReport,
    IndexRun,
    Progress,
    Undecodable,
)
from semsearch.store import ImageRecord, Move, Store

log = logging.getLogger(__name__)


def _prepare(
    extractor: Embedder, run: IndexRun, f: ImageFile, rec: ImageRecord | None
) -> Decoded | Move | Undecodable:
    check_name(f.path)
    data = read_bytes(f.path, file_byte_cap(extractor.max_pixels))
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    route = run.route(f, rec, sha, size)
    if isinstance(route, Move):
        return route
    try:
        pixels, (width, height) = extractor.decode(data, name=f.path)
    except BadImageError as exc:
        stale = rec.id if rec is not None and rec.sha256 != sha else None
        return Undecodable(exc.path, exc.reason, stale)
    return Decoded(ImageFile(f.path, size, f.mtime_ns), sha, width, height, route.replaces,
                    rec is None, pixels)


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
    run = IndexRun(store, extractor, root)
    decoded: list[Decoded] = []
    moves: list[Move] = []
    done = 0

    def flush() -> None:
        nonlocal decoded, moves
        sets = extractor.embed_sets([d.pixels for d in decoded]) if decoded else []
        run.write(decoded, sets, moves)
        decoded, moves = [], []

    n_workers = cores_or(workers)
    total = len(run.todo)
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="decode") as pool_:
        pending: deque[tuple[ImageFile, Future[Decoded | Move | Undecodable]]] = deque()
        todo = iter(run.todo)
        ahead = 2 * batch_size + n_workers

        def submit_more() -> None:
            while len(pending) < ahead:
                item = next(todo, None)
                if item is None:
                    return
                pending.append((item[0], pool_.submit(_prepare, extractor, run, *item)))

        submit_more()
        while pending:
            f, future = pending.popleft()
            submit_more()
            try:
                result = future.result()
            except BadImageError as exc:
                run.skip(exc.path, exc.reason)
                log.warning("skipping %s: %s", exc.path, exc.reason)
            else:
                if isinstance(result, Move):
                    moves.append(result)
                elif isinstance(result, Undecodable):
                    run.skip(result.path, result.reason, result.stale_id)
                else:
                    decoded.append(result)
            done += 1
            if len(decoded) >= batch_size or len(moves) >= 4 * batch_size:
                flush()
                if progress:
                    progress(done, total)
        if decoded or moves:
            flush()
    report = run.finish()
    if progress:
        progress(total, total)
    return report
