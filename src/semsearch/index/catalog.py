"""Index files beside the catalogue, each with a JSON manifest saying what it holds (feature
set, metric, count, the feature set's version in the store). An index whose manifest does not
match the store is stale and is rebuilt. Files are written whole and then renamed into place,
and the manifest last, so a crash never leaves a manifest pointing at half a file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from semsearch.index.exact import Calibration, ExactIndex, Metric, calibration
from semsearch.store import FeatureSetRecord, Store

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 3


@dataclass(frozen=True)
class LoadedIndex:
    """An index in memory with its manifest, and the score calibration read from it once."""

    index: ExactIndex
    manifest: dict[str, Any]
    calibration: Calibration


@dataclass(frozen=True)
class IndexStatus:
    metric: str
    count: int
    fresh: bool
    path: str


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class IndexCatalog:
    """Builds, saves, loads and checks the freshness of the indexes of one store."""

    def __init__(self, store: Store, folder: Path | None = None) -> None:
        self.store = store
        self.folder = folder or store.path.with_name(store.path.name + ".indexes")

    def _stem(self, record: FeatureSetRecord, metric: Metric) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", record.name)
        digest = hashlib.sha256(f"{record.name}|{record.preprocessing}".encode()).hexdigest()[:8]
        return f"{slug}-{digest}.{metric.tag}"

    def manifest_path(self, record: FeatureSetRecord, metric: Metric) -> Path:
        return self.folder / f"{self._stem(record, metric)}.json"

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
            and manifest.get("schema_version") == self.store.schema_version
            and (self.folder / str(manifest.get("file"))).is_file()
        )

    def get(self, record: FeatureSetRecord, metric: Metric) -> LoadedIndex:
        """Gives the feature set's index for the metric, rebuilding it if stale or missing."""
        manifest = self._read_manifest(self.manifest_path(record, metric))
        if manifest is not None and self.is_fresh(record, manifest):
            try:
                index = ExactIndex.load(self.folder / manifest["file"], metric)
                calib = Calibration(**manifest["score_calibration"])
                if len(index) == manifest.get("count") and index.dim == record.dim:
                    return LoadedIndex(index, manifest, calib)
                log.warning("index %s does not match the catalogue; rebuilding",
                            manifest["file"])
            except Exception as exc:  # noqa: BLE001 - a damaged file is rebuilt, not fatal
                log.warning("index %s unreadable (%s); rebuilding", manifest["file"], exc)
        return self.build(record, metric)

    def build(self, record: FeatureSetRecord, metric: Metric) -> LoadedIndex:
        """Builds the index from the store's vectors and saves it with its manifest."""
        started = time.perf_counter()
        ids, vectors = self.store.vectors(record.id)
        index = ExactIndex.build(vectors, ids, metric)
        calib = calibration(index, vectors)
        stem = self._stem(record, metric)
        file_name = f"{stem}.v{record.version}.faiss"
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
            "score_calibration": asdict(calib),
            "built_at": time.time(),
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.folder / file_name, index.save)
            _atomic_write(
                self.manifest_path(record, metric),
                lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)),
            )
            for old in self.folder.glob(f"{stem}.v*.faiss"):
                if old.name != file_name:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            # The index still serves this process; it is rebuilt next time.
            log.warning("cannot save the index in %s (%s); it will be rebuilt on next use",
                        self.folder, exc.strerror or exc)
        log.info("built %s index of %s (%d vectors) in %.2fs", metric, record.name, len(ids),
                 time.perf_counter() - started)
        return LoadedIndex(index, manifest, calib)

    def status(self, record: FeatureSetRecord) -> list[IndexStatus]:
        """Gives the saved indexes of a feature set and whether each is fresh."""
        found = []
        prefix = self._stem(record, Metric()).rsplit(".", 1)[0] + "."
        for path in sorted(self.folder.glob(prefix + "*.json")):
            manifest = self._read_manifest(path)
            if manifest is None:
                continue
            metric = str(Metric(manifest.get("metric", "cosine"), float(manifest.get("p", 3.0))))
            found.append(IndexStatus(metric, int(manifest.get("count", 0)),
                                     self.is_fresh(record, manifest), str(path)))
        return found
