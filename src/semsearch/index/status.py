"""The state of a feature set's saved indexes, as `semsearch info` and the web app show it:
read from their manifests (FAISS files) or from PostgreSQL (pgvector), never rebuilt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from semsearch.index.manifest import EXPAND_MAX, index_stem, is_fresh, read_manifest
from semsearch.index.metric import Metric
from semsearch.store import FeatureSetRecord, Store


@dataclass(frozen=True)
class IndexStatus:
    metric: str
    count: int
    fresh: bool
    path: str
    expansion: str
    index: str = "Flat"
    recall_at_10: float | None = None
    search_params: str = ""
    ram_bytes_per_vector: float | None = None


def index_statuses(store: Store, folder: Path, record: FeatureSetRecord) -> list[IndexStatus]:
    """Gives the saved indexes of a feature set and whether each is fresh."""
    found = _pgvector_statuses(store, record)
    prefix = index_stem(record, Metric()).rsplit(".", 1)[0] + "."
    for path in sorted(folder.glob(prefix + "*.json")):
        manifest = read_manifest(path)
        if manifest is not None:
            found.append(_file_status(manifest, path, is_fresh(store, folder, record,
                                                               manifest)))
    return found


def _file_status(manifest: dict[str, Any], path: Path, fresh: bool) -> IndexStatus:
    metric = str(Metric(manifest.get("metric", "cosine"), float(manifest.get("p", 3.0))))
    used = int(manifest.get("expand_k_used", 0))
    asked = int(manifest.get("expand_k", 0))
    expansion = (f"database-side augmentation, k={used}" if used else
                 f"no augmentation (asked k={asked}; over {EXPAND_MAX} vectors)"
                 if asked else "")
    recall = manifest.get("recall_at_10")
    params = manifest.get("search_params") or {}
    count = int(manifest.get("count", 0))
    ram = manifest.get("ram_bytes")
    return IndexStatus(
        metric, count, fresh, str(path), expansion, str(manifest.get("index", "Flat")),
        float(recall) if recall is not None else None,
        ", ".join(f"{k}={v}" for k, v in params.items()),
        float(ram) / count if ram is not None and count else None)


def _pgvector_statuses(store: Store, record: FeatureSetRecord) -> list[IndexStatus]:
    from semsearch.store.postgres import PostgresStore

    if not store.searches_vectors:
        return []
    pg = cast(PostgresStore, store)
    found = []
    count = pg.count_vectors(record.id)
    for metric in ("cosine", "ip", "euclidean"):  # sqeuclidean shares euclidean's
        if not pg.has_hnsw(record.id, metric):
            continue
        name = pg.hnsw_index_name(record.id, metric)
        saved = pg.meta(f"recall:{name}")
        data = json.loads(saved) if saved else {}
        params = data.get("params") or {}
        found.append(IndexStatus(
            metric if metric != "euclidean" else "euclidean/sqeuclidean", count, True,
            f"{pg.location} index {name}", "", "pgvector HNSW",
            data.get("recall_at_10"), ", ".join(f"{k}={v}" for k, v in params.items())))
    return found
