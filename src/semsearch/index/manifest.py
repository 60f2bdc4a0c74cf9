"""An index's manifest: the JSON file beside the index files saying what they hold (feature
set, metric, count, the feature set's version in the store) and which files they are. An
index whose manifest does not match the store is stale and is rebuilt; this module names,
reads and judges manifests, the catalog writes them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from semsearch.index.metric import Metric
from semsearch.indexspec import IndexSpec
from semsearch.store import FeatureSetRecord, Store

MANIFEST_FORMAT = 4
# Database-side augmentation is exact and costs n^2 dot products; above this many vectors an
# index is built without it (the manifest and `semsearch info` say so).
EXPAND_MAX = 20_000
EXPAND_ALPHA = 3.0


def index_stem(record: FeatureSetRecord, metric: Metric, expand_k: int = 0,
               spec: IndexSpec | None = None) -> str:
    """Gives the name an index's files and manifest start with: the feature set (readable,
    and a digest that tells feature sets of one name apart), the metric, and the
    approximate index or the augmentation."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", record.name)
    digest = hashlib.sha256(f"{record.name}|{record.preprocessing}".encode()).hexdigest()[:8]
    if spec is not None and not spec.exact:
        return f"{slug}-{digest}.{metric.tag}.{spec.tag}"
    return f"{slug}-{digest}.{metric.tag}" + (f"-dba{expand_k}" if expand_k else "")


def read_manifest(path: Path) -> dict[str, Any] | None:
    """Gives the manifest at path, or None if it is missing or damaged."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def identity(store: Store, record: FeatureSetRecord, metric: Metric, count: int
             ) -> dict[str, Any]:
    """Gives the manifest fields that tie an index to what it was built from (checked by
    is_fresh)."""
    return {
        "format": MANIFEST_FORMAT,
        "catalogue_id": store.catalogue_id,
        "feature_set": record.name,
        "preprocessing": record.preprocessing,
        "metric": metric.name,
        "p": metric.p,
        "dim": record.dim,
        "count": count,
        "vectors_version": record.version,
        "schema_version": store.schema_version,
    }


def is_fresh(store: Store, folder: Path, record: FeatureSetRecord,
             manifest: dict[str, Any] | None) -> bool:
    """Gives whether a manifest describes the store's current vectors of the feature set,
    with every file it names in folder."""
    return (
        manifest is not None
        and manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("catalogue_id") == store.catalogue_id
        and isinstance(manifest.get("score_calibration"), dict)
        and manifest.get("feature_set") == record.name
        and manifest.get("preprocessing") == record.preprocessing
        and manifest.get("vectors_version") == record.version
        and manifest.get("expand_alpha") == EXPAND_ALPHA
        and manifest.get("schema_version") == store.schema_version
        and all((folder / str(name)).is_file() for name in files_of(manifest))
    )


def files_of(manifest: dict[str, Any]) -> list[str]:
    """Gives the names of the files an index manifest refers to."""
    if manifest.get("kind") == "approximate":
        files = manifest.get("files")
        return [str(v) for v in files.values() if v] if isinstance(files, dict) else ["?"]
    return [str(n) for n in (manifest.get("file"), manifest.get("base_file")) if n]
