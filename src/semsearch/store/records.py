"""What the catalogue holds and is given, as typed records: images, feature sets, new
images and moves to write, comparison runs, adapters and the vectors they give."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.featureset import FeatureSet


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    label: str


@dataclass(frozen=True)
class FeatureSetRecord:
    """A feature set as stored: `version` grows with every change to its vectors (and only
    then: a file that moves keeps its vector and its id, so indexes stay valid)."""

    id: int
    feature_set: FeatureSet
    preprocessing: str
    dim: int
    version: int

    @property
    def name(self) -> str:
        return str(self.feature_set)


@dataclass(frozen=True)
class NewImage:
    """A decoded file and its vectors (by feature set id), ready to be written. `replaces` is
    the id of a stored image with the same content (a moved file) whose row is re-pointed
    instead of added."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    label: str
    vectors: Mapping[int, npt.NDArray[np.float32]]
    replaces: int | None = None


@dataclass(frozen=True)
class Move:
    """A stored image whose file now lives at another path, or was touched, unchanged."""

    image_id: int
    path: str
    size: int
    mtime_ns: int
    label: str
    touched: bool = False  # same path, same content, new modification time


@dataclass(frozen=True)
class SweepRecord:
    """A stored comparison run: the folder it measured and its settings (JSON text)."""

    id: int
    root: str
    settings: str
    created_at: float


@dataclass(frozen=True)
class SweepRow:
    """One configuration's scores in a sweep: the means (JSON text) and the weighted
    precision at 15 of every query image, by image id."""

    feature_set: str
    preprocessing: str
    metric: str
    scores: str
    image_ids: npt.NDArray[np.int64]
    per_query: npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdapterRecord:
    """A learned projection (dim_in x dim_out) of a base feature set's vectors, and what it
    was trained on (JSON text). `digest` names these exact weights."""

    name: str
    base: FeatureSet
    preprocessing: str
    weights: npt.NDArray[np.float32]
    info: str
    created_at: float

    @property
    def digest(self) -> str:
        return weights_digest(self.weights)


def weights_digest(weights: npt.NDArray[np.float32]) -> str:
    """Gives a short name of exactly these adapter weights."""
    return hashlib.sha256(np.ascontiguousarray(weights, np.float32).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class AdaptedVectors:
    """The vectors an adapter gives for stored images, written with the adapter."""

    feature_set: FeatureSet
    preprocessing: str
    image_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
