"""Models: the networks one session works with, each made once and shared by a server's
threads: model specs (a user's onnx:PATH ones too), backbones, torch networks, layer
tables and extractors, and the feature set the settings name."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from semsearch.config import Config
from semsearch.embed.build import AdapterWeights, ExtractorSettings, build_extractor, load
from semsearch.embed.extractors import Extractor, adapted_input_key
from semsearch.errors import FeatureSetError, SemsearchError
from semsearch.featureset import FeatureSet, check_pooling, join_models, split_models
from semsearch.models.onnx_file import is_onnx_name, onnx_input, onnx_spec
from semsearch.models.registry import ModelRegistry, ModelSpec, input_key
from semsearch.models.runtime import Backbone

if TYPE_CHECKING:
    from semsearch.models.layers import LayerInfo

_BACKBONES_KEPT = 4


class AdapterRecord(AdapterWeights, Protocol):
    @property
    def created_at(self) -> float: ...


class AdapterSource(Protocol):
    """Where adapters are kept (the catalogue)."""

    def adapter(self, name: str) -> AdapterRecord: ...

    def adapter_created(self, name: str) -> float | None: ...


class Models:
    """The models of one session. Close nothing: ONNX Runtime sessions go with the object."""

    def __init__(self, config: Config, registry: ModelRegistry,
                 adapters: AdapterSource) -> None:
        self.config = config
        self.registry = registry
        self.settings = ExtractorSettings.of(config)
        self._adapter_source = adapters
        # A server's threads share these: models load once.
        self._lock = threading.RLock()
        self._extractors: dict[str, Extractor] = {}
        self._onnx_specs: dict[str, ModelSpec] = {}
        self._adapters: dict[str, AdapterRecord] = {}
        self._backbones: dict[tuple[str, tuple[str, ...]], Backbone] = {}
        self._networks: dict[str, tuple[Any, threading.Lock]] = {}
        self._tables: dict[str, list[LayerInfo]] = {}

    def spec(self, name: str) -> ModelSpec:
        """Gives a registered model's spec, or that of a user's `onnx:PATH` model."""
        if is_onnx_name(name):
            with self._lock:
                if name not in self._onnx_specs:
                    self._onnx_specs[name] = onnx_spec(name, onnx_input(self.config))
                return self._onnx_specs[name]
        return self.registry.get(name)

    def specs(self, fs: FeatureSet) -> tuple[ModelSpec, ...]:
        """Gives the specs of a feature set's models, in order."""
        return tuple(self.spec(model) for model in fs.models)

    def feature_set(self, model: str | None = None, layer: str | None = None,
                    pool: str | None = None, adapter: str | None = None) -> FeatureSet:
        """Gives the feature set named by the arguments, falling back to the settings and to
        the (first) model's default layer. With an adapter, the feature set is the
        adapter's base, adapted."""
        adapter = adapter or self.config.adapter
        if adapter:
            fs = self._adapter_source.adapter(adapter).base
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
        specs = [self.spec(part) for part in split_models(name)]
        return FeatureSet(name, layer or self.config.layer or specs[0].default_layer,
                          pool or self.config.pool)

    def adapter(self, fs: FeatureSet) -> AdapterRecord:
        """Gives the adapter of an adapted feature set, reloaded when retrained (here or by
        another process); one small query otherwise."""
        with self._lock:
            cached = self._adapters.get(fs.adapter)
            if cached is None or cached.created_at != self._adapter_source.adapter_created(
                    fs.adapter):
                cached = self._adapters[fs.adapter] = self._adapter_source.adapter(fs.adapter)
        if cached.base != fs.base:
            raise FeatureSetError(f"adapter {fs.adapter} projects {cached.base}, not {fs.base}")
        return cached

    def extractor(self, fs: FeatureSet) -> Extractor:
        """Gives the (cached) extractor for a feature set, loading its backbones."""
        with self._lock:
            if not fs.adapter:
                key = str(fs)
                if key not in self._extractors:
                    self._extractors[key] = build_extractor(fs, self.specs(fs), self.settings)
                return self._extractors[key]
            adapter = self.adapter(fs)
            key = f"{fs}|{adapter.digest}"
            if key not in self._extractors:
                self._extractors[key] = build_extractor(
                    fs, self.specs(fs), self.settings, adapter,
                    base=self.extractor(fs.base))
            return self._extractors[key]

    def input_key(self, fs: FeatureSet) -> str:
        """Gives how the feature set's models are fed (and for an adapted set, which
        weights project it), as stored beside its vectors."""
        key = join_models([input_key(spec) for spec in self.specs(fs)])
        if fs.adapter:
            return adapted_input_key(key, self.adapter(fs).digest)
        return key

    def backbone(self, model: str, layers: Sequence[str]) -> Backbone:
        """Gives a backbone of one model that yields the given layers in one pass. The few
        used last are kept (each holds an ONNX Runtime session and its memory)."""
        key = (model, tuple(layers))
        with self._lock:
            backbone = self._backbones.pop(key, None)
            if backbone is None:
                backbone = load(self.spec(model), layers, self.settings)
            self._backbones[key] = backbone  # most recently used last
            while len(self._backbones) > _BACKBONES_KEPT:
                self._backbones.pop(next(iter(self._backbones)))
            return backbone

    def layer_table(self, model: str) -> list[LayerInfo]:
        """Gives a model's layers (worked out once)."""
        from semsearch.models.summary import layers

        with self._lock:
            if model not in self._tables:
                self._tables[model] = layers(self.registry, model, onnx_input(self.config))
            return self._tables[model]

    def title(self, fs: FeatureSet) -> str:
        """Gives the feature set's human name (models.titles), or its exact string when a
        model of it cannot be described here (no longer registered, its ONNX file gone)."""
        from semsearch.models.titles import feature_set_title

        try:
            return feature_set_title(fs, self.specs(fs), self.layer_table)
        except SemsearchError:
            return str(fs)

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
