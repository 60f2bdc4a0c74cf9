"""Builds the objects a front end needs from a Config: the store, the model registry,
extractors (cached per feature set) and the search service."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semsearch.config import Config
from semsearch.errors import FeatureSetError, NotIndexedError
from semsearch.features import (
    AdaptedExtractor,
    CompositeExtractor,
    Extractor,
    FeatureExtractor,
    adapted_input_key,
)
from semsearch.featureset import FeatureSet
from semsearch.images import check_name, real_path
from semsearch.index.approx import SearchParams
from semsearch.index.catalog import IndexCatalog, IndexStatus
from semsearch.index.exact import Metric
from semsearch.indexing import IndexReport, Progress, index_folder
from semsearch.models.network import LayerInfo
from semsearch.models.onnx_file import is_onnx_name, onnx_spec
from semsearch.models.registry import ModelRegistry, ModelSpec, default_registry, input_key
from semsearch.models.runtime import Backbone, load_backbone
from semsearch.pooling import check_pooling
from semsearch.search import SearchResult, SearchService
from semsearch.store import AdapterRecord, FeatureSetRecord, Store

if TYPE_CHECKING:
    from semsearch.text import TextModel


@dataclass(frozen=True)
class FeatureSetInfo:
    feature_set: str
    preprocessing: str
    dim: int
    vectors: int
    indexes: list[IndexStatus]


@dataclass(frozen=True)
class CatalogueInfo:
    db: str
    schema_version: int
    images: int
    feature_sets: list[FeatureSetInfo]


_BACKBONES_KEPT = 4


def open_store(config: Config, *, create: bool = True) -> Store:
    """Gives the configured catalogue: SQLite by default, PostgreSQL for a postgresql:// URL
    (its FAISS index files then live in the cache folder)."""
    from semsearch.pgstore import is_url

    if is_url(config.db):
        from semsearch.pgstore import PostgresStore

        return PostgresStore.open_url(str(config.db), index_root=config.cache_path(),
                                      create=create)
    return Store.open(config.db_path(), create=create)


class Session:
    """Everything one command or one server works with. Close it when done."""

    def __init__(self, config: Config, registry: ModelRegistry | None = None,
                 store: Store | None = None, *, create: bool = True) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.store = store or open_store(config, create=create)
        self.catalog = IndexCatalog(
            self.store, index=config.index, on_disk=config.index_on_disk,
            params=SearchParams(config.nprobe, config.ef_search, config.refine_k))
        self._extractors: dict[str, Extractor] = {}
        self._search: SearchService | None = None
        self._onnx_specs: dict[str, ModelSpec] = {}
        self._adapters: dict[str, AdapterRecord] = {}
        # A server's threads share the session: models load once.
        self._lock = threading.RLock()
        self._backbones: dict[tuple[str, tuple[str, ...]], Backbone] = {}
        self._networks: dict[str, tuple[Any, threading.Lock]] = {}
        self._text: TextModel | None = None
        self._tables: dict[str, list[LayerInfo]] = {}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_path()

    def feature_set(self, model: str | None = None, layer: str | None = None,
                    pool: str | None = None, adapter: str | None = None) -> FeatureSet:
        """Gives the feature set named by the arguments, falling back to the settings and to
        the (first) model's default layer. `a+b` names a composite of models a and b. With an
        adapter, the feature set is the adapter's base, adapted."""
        adapter = adapter or self.config.adapter
        if adapter:
            fs = self.store.adapter(adapter).base
            pooling = check_pooling(pool) if pool is not None else None
            for part, given in (("model", model), ("layer", layer), ("pooling", pooling)):
                if given is not None and given != getattr(fs, part):
                    raise FeatureSetError(
                        f"adapter {adapter} projects {fs}; its {part} is "
                        f"{getattr(fs, part)}, not {given}")
            return fs.adapted(adapter)
        return self.plain_feature_set(model, layer, pool)

    def plain_feature_set(self, model: str | None = None, layer: str | None = None,
                          pool: str | None = None) -> FeatureSet:
        """Gives the feature set named by the arguments and the settings, leaving any
        adapter out: what an adapter would be trained on."""
        name = model or self.config.model
        specs = [self.spec(part) for part in name.split("+")]
        return FeatureSet(name, layer or self.config.layer or specs[0].default_layer,
                          pool or self.config.pool)

    def metric(self, name: str | None = None, p: float | None = None) -> Metric:
        return Metric(name or self.config.metric, p or self.config.minkowski_p)

    def extractor(self, fs: FeatureSet) -> Extractor:
        """Gives the (cached) extractor for a feature set, loading its backbones."""
        with self._lock:
            return self._extractor(fs)

    def _extractor(self, fs: FeatureSet) -> Extractor:
        if fs.adapter:
            adapter = self._adapter(fs)
            key = f"{fs}|{adapter.digest}"
            if key not in self._extractors:
                self._extractors[key] = AdaptedExtractor(fs, self._extractor(fs.base),
                                                         adapter.weights, adapter.digest)
            return self._extractors[key]
        key = str(fs)
        if key not in self._extractors:
            models = fs.model.split("+")
            if len(set(models)) != len(models):
                raise FeatureSetError(f"{fs.model}: a model appears twice in the composite")
            parts = [self._single(FeatureSet(model, fs.layer, fs.pooling)) for model in models]
            extractor: Extractor = (parts[0] if len(parts) == 1
                                    else CompositeExtractor(fs, parts))
            if extractor.dim > self.config.flat_max_dims:
                raise FeatureSetError(
                    f"{fs} gives {extractor.dim:,} dimensions, above the cap of "
                    f"{self.config.flat_max_dims:,} (setting flat_max_dims)")
            self._extractors[key] = extractor
        return self._extractors[key]

    def backbone(self, model: str, layers: Sequence[str]) -> Backbone:
        """Gives a backbone of one model that yields the given layers in one pass. The few
        used last are kept (each holds an ONNX Runtime session and its memory)."""
        key = (model, tuple(layers))
        with self._lock:
            backbone = self._backbones.pop(key, None)
            if backbone is None:
                backbone = load_backbone(self.spec(model), list(layers),
                                         runtime=self.config.runtime, cache_dir=self.cache_dir,
                                         threads=self.config.threads)
            self._backbones[key] = backbone  # most recently used last
            while len(self._backbones) > _BACKBONES_KEPT:
                self._backbones.pop(next(iter(self._backbones)))
            return backbone

    def layer_table(self, model: str) -> list[LayerInfo]:
        """Gives a model's layers (worked out once per session)."""
        from semsearch.models.summary import layers

        with self._lock:
            if model not in self._tables:
                self._tables[model] = layers(self.registry, model, self.config.onnx_input())
            return self._tables[model]

    def network(self, model: str) -> tuple[Any, threading.Lock]:
        """Gives a registered model's torch network (built once) and the lock to hold while
        using it in ways that change its state (hooks, gradients)."""
        with self._lock:
            if model not in self._networks:
                spec = self.spec(model)
                if spec.onnx_path is not None:
                    raise FeatureSetError(f"{model} is an ONNX file; this needs a model with "
                                          "torch weights (lite0, lite1, lite2)")
                if self.config.threads:
                    import torch

                    torch.set_num_threads(self.config.threads)
                self._networks[model] = (spec.build(), threading.Lock())
            return self._networks[model]

    def text_model(self) -> TextModel:
        """Gives the sentence model and the class embeddings (loaded once, when first used)."""
        with self._lock:
            if self._text is None:
                from semsearch.text import TextModel

                self._text = TextModel(self.cache_dir)
            return self._text

    def spec(self, name: str) -> ModelSpec:
        """Gives a registered model's spec, or that of a user's `onnx:PATH` model."""
        if is_onnx_name(name):
            if name not in self._onnx_specs:
                self._onnx_specs[name] = onnx_spec(name, self.config.onnx_input())
            return self._onnx_specs[name]
        return self.registry.get(name)

    def input_key(self, fs: FeatureSet) -> str:
        """Gives how the feature set's models are fed (and for an adapted set, which
        weights project it), as stored beside its vectors."""
        key = "+".join(input_key(self.spec(model)) for model in fs.model.split("+"))
        if fs.adapter:
            return adapted_input_key(key, self._adapter(fs).digest)
        return key

    def _adapter(self, fs: FeatureSet) -> AdapterRecord:
        # Reloaded when retrained (here or by another process); one small query otherwise.
        cached = self._adapters.get(fs.adapter)
        if cached is None or cached.created_at != self.store.adapter_created(fs.adapter):
            cached = self._adapters[fs.adapter] = self.store.adapter(fs.adapter)
        adapter = cached
        if adapter.base != fs.base:
            raise FeatureSetError(f"adapter {fs.adapter} projects {adapter.base}, not {fs.base}")
        return adapter

    def _single(self, fs: FeatureSet) -> FeatureExtractor:
        spec = self.spec(fs.model)
        backbone = load_backbone(spec, [fs.layer], runtime=self.config.runtime,
                                 cache_dir=self.cache_dir, threads=self.config.threads)
        return FeatureExtractor(spec, fs, backbone, flat_max_dims=self.config.flat_max_dims,
                                max_pixels=self.config.max_pixels)

    def indexed_feature_set(self, fs: FeatureSet | None) -> FeatureSetRecord:
        """Gives the stored feature set to search: the one asked for, else the default one if
        indexed, else the only one in the store."""
        if fs is not None:
            return self.store.feature_set(fs, self.input_key(fs))
        default = self.feature_set()
        stored = self.store.feature_sets()
        for record in stored:
            if (record.feature_set == default
                    and record.preprocessing == self.input_key(default)):
                return record
        if len(stored) == 1:
            return stored[0]
        if not stored:
            raise NotIndexedError(
                f"the catalogue {self.store.location} is empty; run `semsearch index FOLDER` first"
            )
        raise NotIndexedError(
            "several feature sets are indexed; choose one with --model/--layer/--pool: "
            + ", ".join(r.name for r in stored)
        )

    def search_service(self) -> SearchService:
        if self._search is None:
            self._search = SearchService(
                self.store, self.catalog, lambda record: self.extractor(record.feature_set)
            )
        return self._search

    def index(self, path: str, *, feature_set: FeatureSet | None = None,
              progress: Progress | None = None) -> IndexReport:
        """Brings the catalogue up to date with a folder for the feature set (default: the
        configured one), on the configured engine (local threads, or a Ray cluster), and
        leaves its search index for the configured metric built."""
        if self.config.engine == "ray":
            from semsearch.distributed import check_cluster

            check_cluster(self.config)  # before loading the model
        extractor = self.extractor(feature_set or self.feature_set())
        if self.config.engine == "ray":
            from semsearch.distributed import index_with_ray

            report = index_with_ray(self, extractor, path, progress=progress)
        else:
            report = index_folder(self.store, extractor, path,
                                  batch_size=self.config.batch_size,
                                  workers=self.config.workers, progress=progress)
        record = self.store.feature_set(extractor.feature_set, extractor.preprocessing)
        self.catalog.get(record, self.metric(), self.config.expand_k)
        return report

    def search(self, query: str, *, feature_set: FeatureSet | None = None,
               k: int | None = None) -> SearchResult:
        """Gives the nearest images to a query written as text (a file, or an indexed id)."""
        service = self.search_service()
        resolved = service.resolve(query)
        record = self.indexed_feature_set(feature_set)
        return service.search(resolved, feature_set=record, metric=self.metric(),
                              k=k or self.config.k, expand_k=self.config.expand_k)

    def info(self) -> CatalogueInfo:
        """Gives what the catalogue holds, per feature set, with its indexes' state."""
        sets = [
            FeatureSetInfo(record.name, record.preprocessing, record.dim,
                           self.store.count_vectors(record.id), self.catalog.status(record))
            for record in self.store.feature_sets()
        ]
        return CatalogueInfo(self.store.location, self.store.schema_version,
                             self.store.count_images(), sets)

    def remove(self, path: str) -> int:
        """Removes every image at or below path from the catalogue; gives how many."""
        check_name(path)
        target = real_path(path)
        removed = self.store.remove_under(target)
        if removed == 0:
            raise NotIndexedError(f"nothing is indexed at {target}")
        return removed
