"""Bring your own model: any ONNX image classifier, named `onnx:PATH`. Its layers are the
graph's intermediate tensors, by their real names; input size, normalization and layout
are settings (onnx_size, onnx_mean, onnx_std, onnx_layout)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.atomic import write_atomically
from semsearch.config import Config
from semsearch.errors import UnknownLayerError, UnknownModelError
from semsearch.models.layers import LayerInfo, find_layer
from semsearch.models.preprocess import Preprocess
from semsearch.models.registry import ModelSpec, file_sha256
from semsearch.models.runtime import cached_session

PREFIX = "onnx:"


@dataclass(frozen=True)
class OnnxInput:
    """How images are fed to an ONNX model: square size (0: the model's own, else 224),
    per-channel mean and std in 0-255 pixel units, and the input layout."""

    size: int = 0
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    layout: str = "nchw"
    channels: str = "rgb"  # "bgr" for models trained on BGR input (Caffe-style)


def onnx_input(config: Config) -> OnnxInput:
    """Gives how the settings say images are fed to onnx:PATH models."""
    mean = tuple(float(p) for p in config.onnx_mean.split(","))
    std = tuple(float(p) for p in config.onnx_std.split(","))
    return OnnxInput(config.onnx_size, mean, std, config.onnx_layout,  # type: ignore[arg-type]
                     config.onnx_channels)


def is_onnx_name(name: str) -> bool:
    return name.startswith(PREFIX)


def _load(path: str) -> Any:
    import onnx

    if not os.path.isfile(path):
        raise UnknownModelError(f"no ONNX file at {path}")
    try:
        return onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a model"
        raise UnknownModelError(f"{path} is not a readable ONNX model: {exc}") from None


def _image_input(model: Any) -> Any:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise UnknownModelError("the ONNX model must take exactly one 4-D image input")
    return inputs[0]


def _dims(value: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim]


def _model_size(model: Any, layout: str) -> int | None:
    dims = _dims(_image_input(model))
    spatial = dims[2:4] if layout == "nchw" else dims[1:3]
    return int(spatial[0]) if all(isinstance(d, int) and d > 0 for d in spatial) else None


def onnx_spec(name: str, options: OnnxInput) -> ModelSpec:
    """Gives the spec of the ONNX model named `onnx:PATH`."""
    path = os.path.abspath(os.path.expanduser(name[len(PREFIX):]))
    if options.layout not in ("nchw", "nhwc"):
        raise UnknownModelError(f"onnx_layout must be nchw or nhwc, not {options.layout!r}")
    model = _load(path)
    size = _model_size(model, options.layout) or options.size or 224
    if options.size and options.size != size:
        raise UnknownModelError(f"{path} takes {size}x{size} images, not {options.size}")

    def build() -> Any:
        raise UnknownModelError(f"{name} is an ONNX model; it has no torch network")

    spec = ModelSpec(
        name=name,
        description=f"ONNX model {os.path.basename(path)}, {size}px",
        preprocess=Preprocess(size),
        build=build,
        weights_id=lambda: file_sha256(path),
        default_layer="",
        mean=options.mean,
        std=options.std,
        onnx_path=path,
        layout=options.layout,
        channels=options.channels,
    )
    table = onnx_layer_table(spec)
    # The last feature map with spatial extent (not a 1x1 global pool), as for the Lite models.
    maps = ([layer.name for layer in table if layer.height * layer.width > 1]
            or [layer.name for layer in table if layer.height])
    if not maps:
        raise UnknownModelError(f"{path} has no 4-D feature maps to embed with")
    return dataclasses.replace(spec, default_layer=maps[-1])


def _shapes(model: Any, size: int, layout: str) -> dict[str, list[int | str]]:
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    dims = _image_input(fixed).type.tensor_type.shape.dim
    for axis in ((2, 3) if layout == "nchw" else (1, 2)):
        dims[axis].ClearField("dim_param")
        dims[axis].dim_value = size
    inferred = onnx.shape_inference.infer_shapes(fixed)
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {v.name: _dims(v) for v in values}


def onnx_layer_table(spec: ModelSpec) -> list[LayerInfo]:
    """Gives the model's addressable tensors (2-D or 4-D outputs of its nodes) in graph
    order, with channels, spatial size, stride and the node's own parameter count."""
    assert spec.onnx_path is not None
    model = _load(spec.onnx_path)
    size = spec.preprocess.size
    shapes = _shapes(model, size, spec.layout)
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    table = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        params = sum(sizes.get(name, 0) for name in node.input)
        for out in node.output:
            dims = shapes.get(out)
            if not dims or len(dims) not in (2, 4) or not all(
                    isinstance(d, int) for d in dims[1:]):
                continue
            if len(dims) == 4:
                c, h, w = (dims[1], dims[2], dims[3]) if spec.layout == "nchw" else (
                    dims[3], dims[1], dims[2])
                table.append(LayerInfo(out, node.op_type, int(c), int(h), int(w),
                                       size // int(h) if h else 0, params))
            else:
                table.append(LayerInfo(out, node.op_type, int(dims[1]), 0, 0, 0, params))
    return table


class OnnxFileBackbone:
    """ONNX Runtime on the user's model, with the requested tensors added as outputs (the
    edited graph is cached, keyed by the file's content and the layers)."""

    def __init__(self, spec: ModelSpec, layers: Sequence[str], cache_dir: Path,
                 threads: int = 0) -> None:
        import onnx

        assert spec.onnx_path is not None
        self.layers = list(layers)
        self.layout = spec.layout
        self.bgr = spec.channels == "bgr"
        table = onnx_layer_table(spec)
        infos = [find_layer(table, layer, spec.name) for layer in self.layers]
        self._shapes = {info.name: info.shape for info in infos}
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)
        key = hashlib.sha256(json.dumps(
            [spec.weights_id(), self.layers, spec.preprocess.size, spec.layout]).encode()
        ).hexdigest()[:20]
        path = cache_dir / "onnx" / f"byo-{key}.onnx"
        source = spec.onnx_path

        def make(target: Path) -> None:
            model = _load(source)
            shapes = _shapes(model, spec.preprocess.size, spec.layout)
            present = {o.name for o in model.graph.output}
            for layer in self.layers:
                if layer not in present:
                    model.graph.output.append(onnx.helper.make_tensor_value_info(
                        layer, onnx.TensorProto.FLOAT,
                        [None if not isinstance(d, int) else d for d in shapes[layer]]))
            write_atomically(target, lambda tmp: onnx.save(model, tmp))

        self._session = cached_session(path, threads, make)
        self._input = self._session.get_inputs()[0].name

    def run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]:
        if self.bgr:
            images = images[..., ::-1]
        x = (images.astype(np.float32) - self._mean) / self._std
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        outputs = self._session.run(self.layers, {self._input: np.ascontiguousarray(x)})
        result = {}
        for layer, out in zip(self.layers, outputs, strict=True):
            if out.ndim == 4 and self.layout == "nhwc":
                out = out.transpose(0, 3, 1, 2)  # pooling expects channels first
            result[layer] = np.ascontiguousarray(out, dtype=np.float32)
        return result

    def output_shape(self, layer: str) -> tuple[int, ...]:
        if layer not in self._shapes:
            raise UnknownLayerError(f"layer {layer!r} was not requested")
        return self._shapes[layer]
