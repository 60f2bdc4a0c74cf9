"""The layers of a torch network as the framework names them (as models.layers records),
and a wrapper that feeds it raw uint8 images and returns any set of layer outputs from one
forward pass. Only what needs torch lives here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from semsearch.errors import UnknownLayerError
from semsearch.models.layers import PROBS, LayerInfo

# Modules that are called once but add nothing a user would look at.
_SKIPPED_TYPES = (nn.Dropout, nn.Identity, nn.ZeroPad2d, nn.ModuleList, nn.Sequential)
# Padding helpers some implementations define under their own class of this name.
_SKIPPED_TYPE_NAMES = frozenset({"Identity"})


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_table(net: nn.Module, input_size: int, classifier: str | None = None) -> list[LayerInfo]:
    """Gives the network's addressable layers in execution order: every named module that
    runs exactly once per forward pass and returns a 2-D or 4-D tensor. A module reused at
    several places (a shared activation) has no single output, so it is left out."""
    calls: dict[str, int] = {}
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []
    modules = dict(net.named_modules())
    handles = []

    def hook(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if name not in outputs:
                order.append(name)
            if isinstance(output, torch.Tensor):
                outputs[name] = output

        return record

    for name, module in modules.items():
        skipped = isinstance(module, _SKIPPED_TYPES) or type(module).__name__ in _SKIPPED_TYPE_NAMES
        if name and not skipped:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()

    table: list[LayerInfo] = []
    for name in order:
        out = outputs.get(name)
        if calls[name] != 1 or out is None or out.dim() not in (2, 4):
            continue
        height, width = (int(out.shape[2]), int(out.shape[3])) if out.dim() == 4 else (0, 0)
        stride = input_size // height if height else 0
        table.append(
            LayerInfo(name, type(modules[name]).__name__, int(out.shape[1]), height, width,
                      stride, _own_params(modules[name]))
        )
    if classifier is not None:
        head = next(layer for layer in table if layer.name == classifier)
        table.append(LayerInfo(PROBS, "Softmax", head.channels, 0, 0, 0, 0))
    return table


class Taps(nn.Module):
    """Takes uint8 NHWC images, normalizes them as the model expects and returns the outputs
    of the requested layers, in the requested order, from one forward pass."""

    def __init__(
        self,
        net: nn.Module,
        layers: Sequence[str],
        mean: float | tuple[float, ...],
        std: float | tuple[float, ...],
        classifier: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.layers = list(layers)
        if not isinstance(mean, float | int) or not isinstance(std, float | int):
            raise ValueError("torch backbones take one mean and std for all channels")
        self.mean = float(mean)
        self.std = float(std)
        self.classifier = classifier
        self._captured: dict[str, torch.Tensor] = {}
        modules = dict(net.named_modules())
        wanted = {classifier if layer == PROBS else layer for layer in self.layers}
        for name in wanted:
            if name is None or name not in modules:
                raise UnknownLayerError(f"network has no module {name!r}")
            modules[name].register_forward_hook(self._capture(name))

    def _capture(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._captured[name] = output

        return record

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.mean) / self.std
        self._captured.clear()
        self.net(x)
        results = []
        for layer in self.layers:
            if layer == PROBS:
                results.append(torch.softmax(self._captured[self.classifier or ""], dim=1))
            else:
                results.append(self._captured[layer])
        self._captured.clear()
        return tuple(results)
