"""The worker side of a Ray indexing run: the recipe an actor builds the driver's extractor
from, and what it makes of a batch of files.

Each actor builds the extractor once, from picklable parts the driver resolved (settings,
model specs, adapter weights): a worker on another machine never sees the driver's
catalogue. A file's content hash decides on the worker whether it needs the model at all
(a touched or moved file does not); what it becomes is the driver's decision
(`indexing.ray_run`)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from semsearch.config import Config
from semsearch.embed.build import ExtractorSettings, build_extractor
from semsearch.embed.extractors import Embedder
from semsearch.errors import BadImageError, ConfigError, SemsearchError
from semsearch.featureset import FeatureSet
from semsearch.images import file_byte_cap, read_bytes
from semsearch.indexing.workspace import Workspace
from semsearch.models.registry import ModelSpec

# What a worker found for a file (the `status` column).
EMBEDDED = "embedded"  # decoded and embedded: the vector columns hold its vectors
KNOWN = "known"  # its content is in the catalogue with vectors: not embedded
UNREADABLE = "unreadable"  # could not be read (no hash)
UNDECODABLE = "undecodable"  # read and hashed, but not an image that can be used
FAILED = "failed"  # the worker cannot embed at all (reason: why)


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

