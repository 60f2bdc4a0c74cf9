"""Indexing as a Ray Data job, the driver's side: the driver keeps the catalogue (scan, plan,
moves, writes, removals, the report), an actor pool on the cluster reads, hashes, decodes and
embeds (`indexing.ray_worker`). A file's content hash, found on the worker, decides on the
driver what the file becomes, so both engines store the same thing."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.embed.extractors import Embedder, Extractor
from semsearch.errors import BadImageError, SemsearchError
from semsearch.images import ImageFile, check_name
from semsearch.indexing.plan import Content, IndexReport, IndexRun, Progress
from semsearch.indexing.ray_cluster import quiet_data, ray_runtime
from semsearch.indexing.ray_worker import (
    EMBEDDED,
    FAILED,
    KNOWN,
    UNDECODABLE,
    UNREADABLE,
    EmbedFiles,
    Recipe,
    embed_files,
    recipe_for,
)
from semsearch.indexing.workspace import Workspace
from semsearch.store import ImageRecord, Move, Store

log = logging.getLogger(__name__)


class _Writer:
    """Collects what rows call for and writes it in batches, as the local engine does."""

    def __init__(self, run: IndexRun, n_sets: int, batch_size: int) -> None:
        self.run = run
        self.batch_size = batch_size
        self.items: list[Content] = []
        self.vectors: list[list[npt.NDArray[np.float32]]] = [[] for _ in range(n_sets)]
        self.moves: list[Move] = []

    def add(self, item: Content, vectors: Sequence[npt.NDArray[np.float32]]) -> None:
        self.items.append(item)
        for column, vector in zip(self.vectors, vectors, strict=True):
            column.append(vector)

    def full(self) -> bool:
        return len(self.items) >= self.batch_size or len(self.moves) >= 4 * self.batch_size

    def flush(self) -> None:
        if not (self.items or self.moves):
            return
        sets = [np.stack(column) for column in self.vectors] if self.items else []
        self.run.write(self.items, sets, self.moves)
        self.items, self.moves = [], []
        self.vectors = [[] for _ in self.vectors]


def _skip_bad(run: IndexRun, f: ImageFile, rec: ImageRecord | None, status: str, reason: str,
              sha: str) -> None:
    if status == UNREADABLE:
        run.skip(f.path, reason)
        log.warning("skipping %s: %s", f.path, reason)
    else:  # content that replaced what the catalogue holds at this path is gone
        run.skip(f.path, reason, rec.id if rec is not None and rec.sha256 != sha else None)


def _cause(exc: BaseException) -> str:
    # Ray wraps a worker's exception, sometimes twice; the innermost says what went wrong.
    while isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause  # type: ignore[attr-defined]
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def index_folder_ray(
    store: Store,
    extractor: Embedder,
    recipe: Recipe,
    root: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    address: str | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Like `index_folder`, with reading, decoding and embedding done by an actor pool on
    the Ray cluster: an actor per `recipe.config.threads` CPUs, as many as the cluster has
    CPUs for and there are batches (a fixed pool: growing one on demand was slower). Ray is
    started only if there are files to look at (see `ray_runtime`). The driver's extractor
    embeds only the rare file the workers were told to leave out and that turned out to need
    vectors (two copies of one moved file)."""
    run = IndexRun(store, extractor, root)
    total = len(run.todo)
    if progress:
        progress(0, total)
    writer = _Writer(run, len(extractor.outputs), batch_size)
    items: list[dict[str, Any]] = []
    for index, (f, rec) in enumerate(run.todo):
        try:
            check_name(f.path)  # an undecodable name cannot cross into Arrow
        except BadImageError as exc:
            run.skip(exc.path, exc.reason)
            log.warning("skipping %s: %s", exc.path, exc.reason)
            continue
        items.append({"index": index, "path": f.path, "known": run.known_content(rec) or ""})
    done = total - len(items)
    later: list[tuple[ImageFile, ImageRecord | None, int | None]] = []
    if items:
        movable = frozenset(run.movable_hashes())
        with closing(_results(items, recipe, movable, batch_size, address)) as batches:
            for batch in batches:
                later.extend(_take(run, writer, batch, len(extractor.outputs)))
                done += len(batch["index"])
                if writer.full():
                    writer.flush()
                    if progress:
                        progress(done, total)
    if later:
        _embed_here(run, writer, extractor, later)
    writer.flush()
    report = run.finish()
    if progress:
        progress(total, total)
    return report


def _results(items: list[dict[str, Any]], recipe: Recipe, movable: frozenset[str],
             batch_size: int, address: str | None
             ) -> Generator[dict[str, npt.NDArray[Any]], None, None]:
    """Yields the job's output batches as they come, with a Ray failure as one message."""
    with ray_runtime(address) as ray, quiet_data(ray):
        cpus = recipe.config.threads
        batches = -(-len(items) // batch_size)
        actors = max(1, min(batches, int(ray.cluster_resources().get("CPU", 1) // cpus)))
        log.info("Ray job: %d files, %d actors of %d CPU(s)", len(items), actors, cpus)
        dataset = ray.data.from_items(items).map_batches(
            EmbedFiles, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus,
            fn_constructor_kwargs={"recipe": recipe, "movable": movable})
        try:
            yield from dataset.iter_batches(batch_size=None, batch_format="numpy")
        except ray.exceptions.RayError as exc:
            raise SemsearchError(f"the Ray job failed: {_cause(exc)}") from None


def _take(run: IndexRun, writer: _Writer, batch: dict[str, npt.NDArray[Any]], n_sets: int
          ) -> list[tuple[ImageFile, ImageRecord | None, int | None]]:
    """Hands a batch's rows to the writer and the run; gives the files that the workers left
    out as known but that need vectors after all, with the image each replaces."""
    later: list[tuple[ImageFile, ImageRecord | None, int | None]] = []
    vectors = [batch[f"v{j}"] for j in range(n_sets)]
    for r, index in enumerate(batch["index"]):
        f, rec = run.todo[int(index)]
        status, sha = str(batch["status"][r]), str(batch["sha256"][r])
        if status == FAILED:
            raise SemsearchError(f"a Ray worker cannot embed: {batch['reason'][r]}")
        if status == UNREADABLE:
            _skip_bad(run, f, rec, status, str(batch["reason"][r]), sha)
            continue
        size = int(batch["size"][r])
        route = run.route(f, rec, sha, size)
        if isinstance(route, Move):
            writer.moves.append(route)
        elif status == KNOWN:
            later.append((f, rec, route.replaces))
        elif status == UNDECODABLE:
            _skip_bad(run, f, rec, status, str(batch["reason"][r]), sha)
        else:
            writer.add(Content(ImageFile(f.path, size, f.mtime_ns), sha, int(batch["width"][r]),
                               int(batch["height"][r]), route.replaces, rec is None),
                       [v[r] for v in vectors])
    return later


def _embed_here(run: IndexRun, writer: _Writer, extractor: Embedder,
                later: list[tuple[ImageFile, ImageRecord | None, int | None]]) -> None:
    log.info("embedding %d file(s) on the driver", len(later))
    columns = embed_files(extractor, [f.path for f, _, _ in later], [""] * len(later),
                          frozenset())
    vectors = [columns[f"v{j}"] for j in range(len(extractor.outputs))]
    for r, (f, rec, replaces) in enumerate(later):
        status, sha = str(columns["status"][r]), str(columns["sha256"][r])
        if status != EMBEDDED:
            _skip_bad(run, f, rec, status, str(columns["reason"][r]), sha)
            continue
        writer.add(Content(ImageFile(f.path, int(columns["size"][r]), f.mtime_ns), sha,
                           int(columns["width"][r]), int(columns["height"][r]), replaces,
                           rec is None), [v[r] for v in vectors])


def index_with_ray(work: Workspace, extractor: Extractor, path: str, *,
                   progress: Progress | None = None) -> IndexReport:
    """Brings the catalogue up to date with a folder like `index_folder`, with decoding and
    embedding as a Ray Data job on the cluster at the `ray_address` setting (else on a
    local one)."""
    return index_folder_ray(work.store, extractor,
                            recipe_for(work, extractor.feature_set, extractor), path,
                            batch_size=work.config.batch_size, address=work.config.ray_address,
                            progress=progress)

