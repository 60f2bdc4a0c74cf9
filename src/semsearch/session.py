"""The composition root: builds what a front end needs from a Config (the catalogue, its
indexes, the models and the search service) and wires them; it holds nothing else."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semsearch.config import Config
from semsearch.embed.extractors import Extractor
from semsearch.embed.hub import Models
from semsearch.featureset import FeatureSet
from semsearch.index.approx import SearchParams
from semsearch.index.catalog import IndexCatalog
from semsearch.index.inventory import CatalogueInfo, FeatureSetInfo, catalogue_info
from semsearch.index.metric import Metric
from semsearch.indexing.engine import forget, index_path
from semsearch.indexing.plan import IndexReport, Progress
from semsearch.models.registry import ModelRegistry, ModelSpec, default_registry
from semsearch.models.runtime import Backbone
from semsearch.query.service import SearchResult, SearchService
from semsearch.query.written import indexed_feature_set, search_written
from semsearch.store import FeatureSetRecord, Store

if TYPE_CHECKING:
    from semsearch.models.layers import LayerInfo
    from semsearch.query.text_model import TextModel

__all__ = ["CatalogueInfo", "FeatureSetInfo", "Session", "open_store"]


def open_store(config: Config, *, create: bool = True) -> Store:
    """Gives the configured catalogue: SQLite by default, PostgreSQL for a postgresql:// URL
    (its FAISS index files then live in the cache folder)."""
    from semsearch.store.postgres import is_url

    if is_url(config.db):
        from semsearch.store.postgres import PostgresStore

        return PostgresStore.open_url(str(config.db), index_root=config.cache_path(),
                                      create=create)
    return Store.open(config.db_path(), create=create)


class Session:
    """The composition root: the catalogue, its indexes, the models and the search service
    built from one Config, for one command or one server. Close it when done."""

    def __init__(self, config: Config, registry: ModelRegistry | None = None,
                 store: Store | None = None, *, create: bool = True) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.store = store or open_store(config, create=create)
        self.catalog = IndexCatalog(
            self.store, index=config.index, on_disk=config.index_on_disk,
            params=SearchParams(config.nprobe, config.ef_search, config.refine_k))
        self.models = Models(config, self.registry, self.store)
        self._lock = threading.Lock()
        self._search: SearchService | None = None
        self._text: TextModel | None = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_path()

    # The models' own calls, here too: what scripts and the front ends name most.
    def feature_set(self, model: str | None = None, layer: str | None = None,
                    pool: str | None = None, adapter: str | None = None) -> FeatureSet:
        """Gives the feature set the arguments and the settings name (see Models)."""
        return self.models.feature_set(model, layer, pool, adapter)

    def plain_feature_set(self, model: str | None = None, layer: str | None = None,
                          pool: str | None = None) -> FeatureSet:
        """Gives the feature set the arguments name, leaving any adapter out."""
        return self.models.plain_feature_set(model, layer, pool)

    def extractor(self, fs: FeatureSet) -> Extractor:
        """Gives the (cached) extractor for a feature set."""
        return self.models.extractor(fs)

    def spec(self, name: str) -> ModelSpec:
        """Gives a model's spec."""
        return self.models.spec(name)

    def backbone(self, model: str, layers: Sequence[str]) -> Backbone:
        """Gives a (cached) backbone of one model yielding the layers."""
        return self.models.backbone(model, layers)

    def network(self, model: str) -> tuple[Any, threading.Lock]:
        """Gives a registered model's torch network and the lock to hold while changing it."""
        return self.models.network(model)

    def layer_table(self, model: str) -> list[LayerInfo]:
        """Gives a model's layers."""
        return self.models.layer_table(model)

    def input_key(self, fs: FeatureSet) -> str:
        """Gives how the feature set's models are fed, as stored beside its vectors."""
        return self.models.input_key(fs)

    def metric(self, name: str | None = None, p: float | None = None) -> Metric:
        """Gives the metric named, or the configured one."""
        return Metric(name or self.config.metric, p or self.config.minkowski_p)

    def text_model(self) -> TextModel:
        """Gives the sentence model and the class embeddings (loaded once, when first used)."""
        with self._lock:
            if self._text is None:
                from semsearch.query.text_model import TextModel

                self._text = TextModel(self.cache_dir)
            return self._text

    def indexed_feature_set(self, fs: FeatureSet | None) -> FeatureSetRecord:
        """Gives the stored feature set to search (see query.service.indexed_feature_set)."""
        return indexed_feature_set(self.store, self.models, fs)

    def search_service(self) -> SearchService:
        """Gives the search service (made once: it keeps the loaded indexes)."""
        with self._lock:
            if self._search is None:
                self._search = SearchService(
                    self.store, self.catalog,
                    lambda record: self.models.extractor(record.feature_set))
            return self._search

    def index(self, path: str, *, feature_set: FeatureSet | None = None,
              progress: Progress | None = None) -> IndexReport:
        """Brings the catalogue up to date with a folder (see indexing.engine.index_path)."""
        return index_path(self, path, feature_set=feature_set, progress=progress)

    def search(self, query: str, *, feature_set: FeatureSet | None = None,
               k: int | None = None) -> SearchResult:
        """Gives the nearest images to a query written as text (a file, or an indexed id)."""
        return search_written(self, query, feature_set=feature_set, k=k)

    def info(self) -> CatalogueInfo:
        """Gives what the catalogue holds, per feature set, with its indexes' state."""
        return catalogue_info(self.store, self.catalog)

    def remove(self, path: str) -> int:
        """Removes every image at or below path from the catalogue; gives how many."""
        return forget(self.store, path)
