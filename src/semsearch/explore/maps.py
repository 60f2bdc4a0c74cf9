"""2-D maps of a collection's vectors (UMAP), computed once per feature set version and kept
in the catalogue."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.images import folder_class, real_path
from semsearch.store import FeatureSetRecord, Store
from semsearch.vectors import l2_normalize

log = logging.getLogger(__name__)

# Vectors are reduced to this many dimensions by PCA before UMAP: faster, and UMAP's
# neighbour graph barely changes.
_PCA_DIMS = 50
_locks: dict[tuple[int, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Map:
    image_ids: npt.NDArray[np.int64]
    coords: npt.NDArray[np.float32]  # n x 2, scaled into [0, 1]
    version: int  # a digest of the vectors it was made from


def layout_2d(vectors: npt.NDArray[np.float32], seed: int = 42) -> npt.NDArray[np.float32]:
    """Gives n x 2 coordinates in [0, 1] placing similar (cosine) vectors near each other:
    UMAP for 16 vectors or more, PCA below that."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    x = l2_normalize(vectors).astype(np.float64)
    x -= x.mean(axis=0)
    if n >= 3:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:min(_PCA_DIMS, len(vt))].T
    if n >= 16:
        import umap

        reducer = umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, metric="cosine",
                            random_state=seed, n_jobs=1)
        coords = np.asarray(reducer.fit_transform(x), np.float64)
    else:
        coords = np.zeros((n, 2))
        coords[:, :min(2, x.shape[1])] = x[:, :2]
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    return ((coords - low) / span).astype(np.float32)


def collection_map(store: Store, record: FeatureSetRecord, root: str) -> Map:
    """Gives the map of the images at or below root for the feature set, from the catalogue
    if it was made from the same vectors, else made now and kept."""
    root = real_path(root)
    with _locks_guard:
        lock = _locks.setdefault((record.id, root), threading.Lock())
    with lock:  # one computation per map, however many requests ask at once
        ids, vectors = store.vectors_under(record.id, root)
        # Made again only when this collection's vectors change, not the feature set's.
        digest = hashlib.sha256(ids.tobytes() + vectors.tobytes()).digest()
        version = int.from_bytes(digest[:7], "big")
        cached = store.load_map(record.id, root)
        if cached is not None and cached[0] == version:
            return Map(cached[1], cached[2], version)
        log.info("making the 2-D map of %d images for %s", len(ids), record.name)
        coords = layout_2d(vectors)
        store.save_map(record.id, root, version, ids, coords)
        return Map(ids, coords, version)


@dataclass(frozen=True)
class ShownMap:
    map: Map  # the images whose files are still there, where the whole map placed them
    labels: list[str]  # each one's class folder under root ("" for none)


def shown_map(store: Store, record: FeatureSetRecord, root: str) -> ShownMap:
    """Gives the map of the images at or below root (see collection_map) without those whose
    files are gone, with their classes. The others keep their places: the map is not made
    again for a deleted file."""
    made = collection_map(store, record, root)
    records = store.images(made.image_ids)
    kept = [i for i, image_id in enumerate(made.image_ids.tolist())
            if image_id in records and os.path.isfile(records[image_id].path)]
    ids = made.image_ids[kept]
    return ShownMap(Map(ids, made.coords[kept], made.version),
                    [folder_class(root, records[int(i)].path) or "" for i in ids])
