"""Indexing as a Ray Data job: the driver keeps the catalogue (scan, plan, moves, writes,
removals, the report), an actor pool on the cluster reads, hashes, decodes and embeds.

Each actor builds the extractor once, from picklable parts the driver resolved (settings,
model specs, adapter weights): a worker on another machine never sees the driver's
catalogue. A file's content hash decides on the worker whether it needs the model at all
(a touched or moved file does not), and on the driver what it becomes, so both engines
store the same thing. Ray is imported here only, when a run needs it."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from semsearch.config import Config
from semsearch.embed.build import ExtractorSettings, build_extractor
from semsearch.embed.extractors import Embedder, Extractor
from semsearch.errors import BadImageError, ConfigError, SemsearchError
from semsearch.featureset import FeatureSet
from semsearch.images import ImageFile, check_name, file_byte_cap, read_bytes
from semsearch.indexing.plan import Content, IndexReport, IndexRun, Progress
from semsearch.indexing.workspace import Workspace
from semsearch.models.registry import ModelSpec
from semsearch.store import ImageRecord, Move, Store

log = logging.getLogger(__name__)

# What a worker found for a file (the `status` column).
EMBEDDED = "embedded"  # decoded and embedded: the vector columns hold its vectors
KNOWN = "known"  # its content is in the catalogue with vectors: not embedded
UNREADABLE = "unreadable"  # could not be read (no hash)
UNDECODABLE = "undecodable"  # read and hashed, but not an image that can be used
FAILED = "failed"  # the worker cannot embed at all (reason: why)

_CONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class Recipe:
    """How to build the driver's extractor on any machine, from picklable parts: the
    settings, the resolved spec of each model (a user's onnx:PATH too) and an adapter's
    weights. `preprocessing` and `dims` are what the driver's extractor gives, checked on
    the worker so that a node with other models or weights fails instead of mixing."""

    config: Config
    feature_set: FeatureSet
    specs: tuple[ModelSpec, ...]
    adapter_weights: npt.NDArray[np.float32] | None
    adapter_digest: str
    preprocessing: str
    dims: tuple[int, ...]

    def build(self) -> Embedder:
        """Gives the extractor, or raises ConfigError if it differs from the driver's."""
        adapter = (_Adapter(self.feature_set.base, self.adapter_weights, self.adapter_digest)
                   if self.adapter_weights is not None else None)
        extractor = build_extractor(self.feature_set, self.specs,
                                    ExtractorSettings.of(self.config), adapter)
        dims = tuple(dim for _, dim in extractor.outputs)
        if (extractor.preprocessing, dims) != (self.preprocessing, self.dims):
            raise ConfigError(
                f"{self.feature_set} gives {extractor.preprocessing} "
                f"{dims} here but {self.preprocessing} {self.dims} on the driver; install the "
                "same semsearch and models on every node")
        return extractor


class _Adapter(NamedTuple):
    base: FeatureSet
    weights: npt.NDArray[np.float32]
    digest: str


def recipe_for(work: Workspace, fs: FeatureSet, extractor: Embedder) -> Recipe:
    """Gives the recipe of the workspace's extractor for fs. Workers use one inference thread
    each unless the `threads` setting asks for more (one CPU per thread)."""
    weights, digest = None, ""
    if fs.adapter:
        adapter = work.models.adapter(fs)
        weights, digest = adapter.weights, adapter.digest
    config = replace(work.config, threads=work.config.threads or 1)
    return Recipe(config, fs, work.models.specs(fs), weights, digest, extractor.preprocessing,
                  tuple(dim for _, dim in extractor.outputs))


def embed_files(extractor: Embedder, paths: Sequence[str], known: Sequence[str],
                movable: frozenset[str], threads: int = 1) -> dict[str, npt.NDArray[Any]]:
    """Gives, as columns, what each file is: status, reason, sha256, size, width, height and
    one vector column per feature set (`v0`, `v1`, ...; zeros where nothing was embedded).
    A file whose hash is its `known` one or in `movable` is not embedded; a bad file gets
    its reason; neither stops the batch."""
    n = len(paths)
    status = np.full(n, EMBEDDED, dtype=object)
    reason = np.full(n, "", dtype=object)
    sha = np.full(n, "", dtype=object)
    size = np.zeros(n, np.int64)
    width = np.zeros(n, np.int64)
    height = np.zeros(n, np.int64)

    def look(i: int) -> Any:
        path = str(paths[i])
        try:
            data = read_bytes(path, file_byte_cap(extractor.max_pixels))
        except BadImageError as exc:
            status[i], reason[i] = UNREADABLE, exc.reason
            return None
        sha[i], size[i] = hashlib.sha256(data).hexdigest(), len(data)
        if sha[i] == known[i] or sha[i] in movable:
            status[i] = KNOWN
            return None
        try:
            pixels, (width[i], height[i]) = extractor.decode(data, name=path)
        except BadImageError as exc:
            status[i], reason[i] = UNDECODABLE, exc.reason
            return None
        except Exception as exc:  # noqa: BLE001 - one odd file must not fail a remote job
            status[i], reason[i] = UNDECODABLE, f"cannot be decoded: {exc}"
            return None
        return pixels

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        decoded = list(pool.map(look, range(n)))
    rows = [i for i, pixels in enumerate(decoded) if pixels is not None]
    sets = extractor.embed_sets([decoded[i] for i in rows]) if rows else []
    columns: dict[str, npt.NDArray[Any]] = {
        "status": status, "reason": reason, "sha256": sha, "size": size, "width": width,
        "height": height}
    for j, (_, dim) in enumerate(extractor.outputs):
        vectors = np.zeros((n, dim), np.float32)
        if rows:
            vectors[rows] = sets[j]
        columns[f"v{j}"] = vectors
    return columns


class EmbedFiles:
    """The Ray Data actor: builds the extractor once, then turns batches of rows (index,
    path, known) into embed_files' columns, keeping the index. If it cannot work (a model
    that will not load on its node), every row says so, as status FAILED: the driver stops
    with that message rather than Ray with a traceback per retry."""

    def __init__(self, recipe: Recipe, movable: frozenset[str]) -> None:
        self.recipe = recipe
        self.movable = movable
        self.error = ""
        try:
            self.extractor = recipe.build()
        except Exception as exc:  # noqa: BLE001 - reported to the driver, row by row
            self.error = _message(exc)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        n = len(batch["index"])
        if not self.error:
            try:
                columns = embed_files(self.extractor, list(batch["path"]),
                                      list(batch["known"]), self.movable,
                                      self.recipe.config.threads)
            except Exception as exc:  # noqa: BLE001 - as above
                self.error = _message(exc)
        if self.error:
            columns = {"status": np.full(n, FAILED, dtype=object),
                       "reason": np.full(n, self.error, dtype=object),
                       "sha256": np.full(n, "", dtype=object),
                       **{name: np.zeros(n, np.int64) for name in ("size", "width", "height")},
                       **{f"v{j}": np.zeros((n, dim), np.float32)
                          for j, dim in enumerate(self.recipe.dims)}}
        columns["index"] = batch["index"]
        return columns


def _message(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, SemsearchError) else f"{type(exc).__name__}: {exc}"
    return f"{socket.gethostname()}: {text}"


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
    with ray_runtime(address) as ray, _quiet_data(ray):
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


def check_cluster(config: Config) -> None:
    """Raises ConfigError if Ray is missing or the configured cluster cannot be reached
    (cheap: call it before loading a model)."""
    _import_ray()
    if config.ray_address:
        _check_reachable(config.ray_address)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("the ray engine needs Ray: pip install 'semsearch[ray]' (on every "
                          "node of the cluster)") from None
    return ray


def _check_reachable(address: str) -> None:
    # ray.init retries an unreachable head for minutes, printing as it goes.
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if match is None:
        return  # "auto", "local": Ray finds (or starts) the cluster itself
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=_CONNECT_SECONDS).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc} (is `ray start --head` running there?)"
                          ) from None


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    # Ray's C++ core writes start-up notes straight to file descriptor 2.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def ray_runtime(address: str | None = None) -> Iterator[Any]:
    """Gives the `ray` module connected to a cluster: the one this process is already
    connected to; else the one at address (HOST:PORT of its head, or auto); else a new
    local one with a CPU per core. What it started it shuts down."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        _check_reachable(address)
    quiet = not log.isEnabledFor(logging.INFO)  # -v shows what Ray says
    if quiet:
        # The C++ core would log every actor Ray Data makes (a known, harmless warning
        # about restarts and constructor arguments); errors still reach us as exceptions.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    started = time.perf_counter()
    try:
        with _stderr_silenced() if quiet else nullcontext():
            if address:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                # "local": a new one, even if `ray start` left one running on this machine.
                ray.init(address="local", num_cpus=os.cpu_count() or 1,
                         include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - whatever Ray says, the user gets one line
        where = f"at {address}" if address else "on this machine"
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ConfigError(f"cannot start Ray {where}: {lines[0]}") from None
    log.info("Ray ready in %.1f s: %g CPUs", time.perf_counter() - started,
             ray.cluster_resources().get("CPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def _quiet_data(ray: Any) -> Iterator[None]:
    """Turns off Ray Data's progress bars and execution notes for the job, then restores."""
    context = ray.data.DataContext.get_current()
    quiet = {"enable_progress_bars": False, "print_on_execution_start": False,
             "enable_auto_log_stats": False}
    saved = {name: getattr(context, name) for name in quiet if hasattr(context, name)}
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    for name in saved:
        setattr(context, name, quiet[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        logger.setLevel(level)
