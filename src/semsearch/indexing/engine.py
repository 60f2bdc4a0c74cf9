"""Indexing a path on the configured engine (local threads, or a Ray cluster), leaving the
search index built; and forgetting a path."""

from __future__ import annotations

from semsearch.errors import NotIndexedError
from semsearch.featureset import FeatureSet
from semsearch.images import check_name, real_path
from semsearch.index.metric import Metric
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport, Progress
from semsearch.indexing.workspace import Workspace
from semsearch.store import Store


def index_path(work: Workspace, path: str, *, feature_set: FeatureSet | None = None,
               progress: Progress | None = None) -> IndexReport:
    """Brings the catalogue up to date with a folder for the feature set (default: the
    configured one), on the configured engine, and leaves its search index for the
    configured metric built; gives the run's report."""
    config, store, models = work.config, work.store, work.models
    if config.engine == "ray":
        from semsearch.indexing.ray_cluster import check_cluster

        check_cluster(config)  # before loading the model
    extractor = models.extractor(feature_set or models.feature_set())
    if config.engine == "ray":
        from semsearch.indexing.ray_run import index_with_ray

        report = index_with_ray(work, extractor, path, progress=progress)
    else:
        report = index_folder(store, extractor, path, batch_size=config.batch_size,
                              workers=config.workers, progress=progress)
    record = store.feature_set(extractor.feature_set, extractor.preprocessing)
    work.catalog.get(record, Metric(config.metric, config.minkowski_p), config.expand_k)
    return report


def forget(store: Store, path: str) -> int:
    """Removes every image at or below path from the catalogue; gives how many."""
    check_name(path)
    target = real_path(path)
    removed = store.remove_under(target)
    if removed == 0:
        raise NotIndexedError(f"nothing is indexed at {target}")
    return removed
