"""The local engine: decoding runs ahead of the model on a thread pool (PIL and ONNX Runtime
release the GIL), and each batch is written in one store transaction."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing

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
    n_workers = cores_or(workers)
    total = len(run.todo)
    if progress:
        progress(0, total)
    ahead = 2 * batch_size + n_workers
    with closing(_decoding_ahead(extractor, run, n_workers, ahead)) as futures:
        for done, future in enumerate(futures, start=1):
            result = _result(run, future)
            if isinstance(result, Move):
                moves.append(result)
            elif result is not None:
                decoded.append(result)
            if len(decoded) >= batch_size or len(moves) >= 4 * batch_size:
                _write(extractor, run, decoded, moves)
                decoded, moves = [], []
                if progress:
                    progress(done, total)
    if decoded or moves:
        _write(extractor, run, decoded, moves)
    report = run.finish()
    if progress:
        progress(total, total)
    return report


def _decoding_ahead(extractor: Embedder, run: IndexRun, workers: int, ahead: int
                    ) -> Generator[Future[Decoded | Move | Undecodable], None, None]:
    """Yields, in the run's order, the futures of its files being read, hashed and decoded
    on a thread pool, keeping `ahead` of them under way."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Decoded | Move | Undecodable]] = deque()
        todo = iter(run.todo)

        def submit_more() -> None:
            while len(pending) < ahead:
                item = next(todo, None)
                if item is None:
                    return
                pending.append(pool.submit(_prepare, extractor, run, *item))

        submit_more()
        while pending:
            future = pending.popleft()
            submit_more()
            yield future


def _result(run: IndexRun, future: Future[Decoded | Move | Undecodable]
            ) -> Decoded | Move | None:
    """Gives what a file became, or None for a bad file (skipped, with its reason)."""
    try:
        result = future.result()
    except BadImageError as exc:
        run.skip(exc.path, exc.reason)
        log.warning("skipping %s: %s", exc.path, exc.reason)
        return None
    if isinstance(result, Undecodable):
        run.skip(result.path, result.reason, result.stale_id)
        return None
    return result


def _write(extractor: Embedder, run: IndexRun, decoded: list[Decoded], moves: list[Move]
           ) -> None:
    """Embeds a batch of decoded files and writes it, with the moves, in one transaction."""
    sets = extractor.embed_sets([d.pixels for d in decoded]) if decoded else []
    run.write(decoded, sets, moves)
