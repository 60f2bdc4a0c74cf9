"""Running a backbone: ONNX Runtime on a graph exported once from the torch weights and cached
(keyed by weights and requested layers), or torch eager as the reference implementation."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from semsearch.atomic import write_atomically
from semsearch.config import cores_or
from semsearch.errors import ModelCacheError
from semsearch.models.registry import ModelSpec

log = logging.getLogger(__name__)

# Bump when the exported graph's inputs or outputs change meaning.
EXPORT_VERSION = 1
_export_lock = threading.Lock()


class Backbone(Protocol):
    """Runs uint8 NHWC image batches and gives each requested layer's output, batch first."""

    layers: list[str]

    def run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]: ...

    def output_shape(self, layer: str) -> tuple[int, ...]: ...


class TorchBackbone:
    """The reference: torch eager on the spec's network."""

    def __init__(self, spec: ModelSpec, layers: Sequence[str], threads: int = 0) -> None:
        import torch

        from semsearch.models.layers import find_layer
        from semsearch.models.network import Taps, layer_table

        if threads:
            torch.set_num_threads(threads)
        net = spec.build()
        table = layer_table(net, spec.preprocess.size, spec.classifier)
        self._shapes = {name: find_layer(table, name, spec.name).shape for name in layers}
        self.layers = list(layers)
        self._taps = Taps(net, self.layers, spec.mean, spec.std, spec.classifier).eval()
        self._lock = threading.Lock()  # Taps keeps each call's outputs on the module

    def run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]:
        import torch

        batch = np.ascontiguousarray(images)
        if not batch.flags.writeable:
            batch = batch.copy()  # torch wants memory it may write to
        with self._lock, torch.inference_mode():
            outputs = self._taps(torch.from_numpy(batch))
        return {name: out.numpy() for name, out in zip(self.layers, outputs, strict=True)}

    def output_shape(self, layer: str) -> tuple[int, ...]:
        return self._shapes[layer]


def graph_key(spec: ModelSpec, layers: Sequence[str]) -> str:
    """Gives the cache key of an exported graph: weights, input handling and layers."""
    payload = {
        "model": spec.name,
        "weights": spec.weights_id(),
        "size": spec.preprocess.size,
        "mean": spec.mean,
        "std": spec.std,
        "layers": list(layers),
        "export": EXPORT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def export_onnx(spec: ModelSpec, layers: Sequence[str], path: Path) -> None:
    """Writes the ONNX graph of the spec's network with the given layers as outputs,
    atomically, so a concurrent reader never sees half a file."""
    import torch

    from semsearch.models.layers import find_layer
    from semsearch.models.network import Taps, layer_table

    net = spec.build()
    table = layer_table(net, spec.preprocess.size, spec.classifier)
    for name in layers:
        find_layer(table, name, spec.name)
    taps = Taps(net, layers, spec.mean, spec.std, spec.classifier).eval()
    size = spec.preprocess.size
    dummy = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    outputs = [f"layer{i}" for i in range(len(layers))]

    def write(tmp: str) -> None:
        # no_grad, not inference_mode: the exporter cannot trace inference tensors.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                taps,
                (dummy,),
                tmp,
                dynamo=False,
                input_names=["images"],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["images", *outputs]},
                opset_version=17,
            )

    write_atomically(path, write)


def cached_session(path: Path, threads: int, make: Callable[[Path], None]) -> Any:
    """Gives an ONNX Runtime session on the graph cached at path, calling make(path) first
    if it is missing, and again if the cached file cannot be loaded."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cores_or(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle runtime threads would otherwise spin, taking the cores the decoders need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")

    def remake() -> None:
        log.info("writing the model graph %s", path)
        try:
            make(path)
        except OSError as exc:
            raise ModelCacheError(
                f"cannot write the model cache in {path.parent}: {exc.strerror or exc} "
                "(setting cache_dir)"
            ) from None

    with _export_lock:
        if not path.exists():
            remake()
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is made again
            log.warning("cached graph %s unusable (%s); making it again", path, exc)
            remake()
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackbone:
    """ONNX Runtime on the cached exported graph; exports on first use."""

    def __init__(
        self, spec: ModelSpec, layers: Sequence[str], cache_dir: Path, threads: int = 0
    ) -> None:
        self.layers = list(layers)
        path = cache_dir / "onnx" / f"{spec.name}-{graph_key(spec, self.layers)}.onnx"
        self.path = path
        self._session = cached_session(path, threads,
                                       lambda p: export_onnx(spec, self.layers, p))
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._shapes = {
            name: tuple(int(d) for d in o.shape[1:])
            for name, o in zip(self.layers, self._session.get_outputs(), strict=True)
        }

    def run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]:
        outputs = self._session.run(self._outputs, {"images": np.ascontiguousarray(images)})
        return dict(zip(self.layers, outputs, strict=True))

    def output_shape(self, layer: str) -> tuple[int, ...]:
        return self._shapes[layer]
