"""Index files beside the catalogue, each with a JSON manifest saying what it holds (feature
set, metric, count, the feature set's version in the store). An index whose manifest does not
match the store is stale and is rebuilt. Files are written whole and then renamed into place,
and the manifest last, so a crash never leaves a manifest pointing at half a file."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.atomic import write_atomically
from semsearch.expansion import augment_query, database_augmentation
from semsearch.index.exact import Calibration, ExactIndex, Metric, calibration
from semsearch.store import FeatureSetRecord, Store

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 4
# Database-side augmentation is exact and costs n^2 dot products; above this many vectors an
# index is built without it (the manifest and `semsearch info` say so).
EXPAND_MAX = 20_000
EXPAND_ALPHA = 3.0


@dataclass(frozen=True)
class LoadedIndex:
    """An index in memory with its manifest and score calibration (read once). With query
    expansion on, `index` holds the DBA gallery and `base` the original vectors."""

    index: ExactIndex
    manifest: dict[str, Any]
    calibration: Calibration
    base: ExactIndex | None = None

    @property
    def expand_k(self) -> int:
        return int(self.manifest.get("expand_k_used", 0))

    def known_vector(self, image_id: int) -> npt.NDArray[np.float32]:
        """Gives an indexed image's vector as this index holds it (its DBA vector when
        augmentation is on); KeyError if the index does not hold it."""
        return self.index.stored(np.array([image_id], dtype=np.int64))[0]

    def expand(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Gives an outside query as it would be in the DBA gallery (see
        expansion.augment_query), using the original vectors; without DBA, the query."""
        if self.base is None:
            return query
        # The base index is a cosine index, so its stored vectors are unit length.
        return augment_query(query[None, :], self.base.vectors, self.expand_k, EXPAND_ALPHA,
                             gallery_normalized=True)[0]


@dataclass(frozen=True)
class IndexStatus:
    metric: str
    count: int
    fresh: bool
    path: str
    expansion: str


class IndexCatalog:
    """Builds, saves, loads and checks the freshness of the indexes of one store."""

    def __init__(self, store: Store, folder: Path | None = None) -> None:
        self.store = store
        self.folder = folder or store.path.with_name(store.path.name + ".indexes")

    def _stem(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", record.name)
        digest = hashlib.sha256(f"{record.name}|{record.preprocessing}".encode()).hexdigest()[:8]
        return f"{slug}-{digest}.{metric.tag}" + (f"-dba{expand_k}" if expand_k else "")

    def manifest_path(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> Path:
        return self.folder / f"{self._stem(record, metric, expand_k)}.json"

    def _read_manifest(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_fresh(self, record: FeatureSetRecord, manifest: dict[str, Any] | None) -> bool:
        return (
            manifest is not None
            and manifest.get("format") == MANIFEST_FORMAT
            and manifest.get("catalogue_id") == self.store.catalogue_id
            and isinstance(manifest.get("score_calibration"), dict)
            and manifest.get("feature_set") == record.name
            and manifest.get("preprocessing") == record.preprocessing
            and manifest.get("vectors_version") == record.version
            and manifest.get("expand_alpha") == EXPAND_ALPHA
            and manifest.get("schema_version") == self.store.schema_version
            and (self.folder / str(manifest.get("file"))).is_file()
            and (not manifest.get("base_file")
                 or (self.folder / str(manifest.get("base_file"))).is_file())
        )

    def get(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> LoadedIndex:
        """Gives the feature set's index for the metric, rebuilding it if stale or missing.
        expand_k > 1 asks for database-side augmentation over that many neighbours (outside
        queries are expanded to match); cosine only, and left out above EXPAND_MAX vectors."""
        expand_k = expand_k if metric.name == "cosine" and expand_k > 1 else 0
        manifest = self._read_manifest(self.manifest_path(record, metric, expand_k))
        if manifest is not None and self.is_fresh(record, manifest):
            try:
                index = ExactIndex.load(self.folder / manifest["file"], metric)
                base = (ExactIndex.load(self.folder / manifest["base_file"], metric)
                        if manifest.get("base_file") else None)
                calib = Calibration(**manifest["score_calibration"])
                if len(index) == manifest.get("count") and index.dim == record.dim:
                    return LoadedIndex(index, manifest, calib, base)
                log.warning("index %s does not match the catalogue; rebuilding",
                            manifest["file"])
            except Exception as exc:  # noqa: BLE001 - a damaged file is rebuilt, not fatal
                log.warning("index %s unreadable (%s); rebuilding", manifest["file"], exc)
        return self.build(record, metric, expand_k)

    def build(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> LoadedIndex:
        """Builds the index from the store's vectors and saves it with its manifest."""
        started = time.perf_counter()
        ids, vectors = self.store.vectors(record.id)
        used = min(expand_k, len(ids)) if len(ids) <= EXPAND_MAX else 0
        if expand_k and not used:
            log.warning("%s has %d vectors, more than %d: built without query expansion",
                        record.name, len(ids), EXPAND_MAX)
        base = ExactIndex.build(vectors, ids, metric) if used else None
        gallery = database_augmentation(vectors, used, EXPAND_ALPHA) if used else vectors
        index = ExactIndex.build(gallery, ids, metric)
        calib = calibration(index, gallery)
        stem = self._stem(record, metric, expand_k)
        file_name = f"{stem}.v{record.version}.faiss"
        base_name = f"{stem}.v{record.version}.base.faiss" if base is not None else None
        manifest = {
            "format": MANIFEST_FORMAT,
            "kind": "exact",
            "catalogue_id": self.store.catalogue_id,
            "feature_set": record.name,
            "preprocessing": record.preprocessing,
            "metric": metric.name,
            "p": metric.p,
            "dim": record.dim,
            "count": len(ids),
            "vectors_version": record.version,
            "schema_version": self.store.schema_version,
            "file": file_name,
            "base_file": base_name,
            "expand_k": expand_k,
            "expand_k_used": used,
            "expand_alpha": EXPAND_ALPHA,
            "score_calibration": asdict(calib),
            "built_at": time.time(),
        }
        try:
            write_atomically(self.folder / file_name, index.save)
            if base is not None and base_name is not None:
                write_atomically(self.folder / base_name, base.save)
            write_atomically(
                self.manifest_path(record, metric, expand_k),
                lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)),
            )
            for old in self.folder.glob(f"{stem}.v*.faiss"):
                if old.name not in (file_name, base_name):
                    old.unlink(missing_ok=True)
        except OSError as exc:
            # The index still serves this process; it is rebuilt next time.
            log.warning("cannot save the index in %s (%s); it will be rebuilt on next use",
                        self.folder, exc.strerror or exc)
        log.info("built %s index of %s (%d vectors) in %.2fs", metric, record.name, len(ids),
                 time.perf_counter() - started)
        return LoadedIndex(index, manifest, calib, base)

    def remove_orphans(self) -> int:
        """Deletes index files whose feature set is no longer in the catalogue (an adapter's
        old weights, say); gives how many indexes went."""
        if not self.folder.is_dir():
            return 0
        known = {(r.name, r.preprocessing) for r in self.store.feature_sets()}
        removed = 0
        for path in self.folder.glob("*.json"):
            manifest = self._read_manifest(path)
            if manifest is None or manifest.get("catalogue_id") != self.store.catalogue_id:
                continue
            if (manifest.get("feature_set"), manifest.get("preprocessing")) in known:
                continue
            for name in (manifest.get("file"), manifest.get("base_file")):
                if name:
                    (self.folder / str(name)).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def status(self, record: FeatureSetRecord) -> list[IndexStatus]:
        """Gives the saved indexes of a feature set and whether each is fresh."""
        found = []
        prefix = self._stem(record, Metric()).rsplit(".", 1)[0] + "."
        for path in sorted(self.folder.glob(prefix + "*.json")):
            manifest = self._read_manifest(path)
            if manifest is None:
                continue
            metric = str(Metric(manifest.get("metric", "cosine"), float(manifest.get("p", 3.0))))
            used = int(manifest.get("expand_k_used", 0))
            asked = int(manifest.get("expand_k", 0))
            expansion = (f"database-side augmentation, k={used}" if used else
                         f"no augmentation (asked k={asked}; over {EXPAND_MAX} vectors)"
                         if asked else "")
            found.append(IndexStatus(metric, int(manifest.get("count", 0)),
                                     self.is_fresh(record, manifest), str(path), expansion))
        return found
