"""Feature visualization: an image optimized to excite one channel of a layer, in the style of
Lucid (Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017).

The image is parameterized in Fourier space, with each frequency scaled by 1/f so that
optimization is not dominated by high-frequency noise, and in a decorrelated colour space
(the square root of ImageNet's colour correlation), squashed into [0, 1] by a sigmoid. Every
step sees it padded, jittered, scaled and rotated at random, so the result is an image the
channel responds to robustly, not an adversarial pattern. The objective is the channel's mean
activation. The forward pass stops at the layer, so early layers render fast."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import QueryError, UnknownLayerError

# sqrt of ImageNet's colour correlation matrix (from Lucid), normalized by its largest norm.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02],
                        [0.27, 0.00, -0.05],
                        [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


@dataclass(frozen=True)
class RenderSettings:
    steps: int = 128
    size: int = 160  # 0: the model's input size
    lr: float = 0.05
    decay: float = 1.0  # spectrum falls off as 1 / f ** decay
    pad: int = 12
    jitter: int = 8
    scales: tuple[float, ...] = (1.0, 0.975, 1.025, 0.95, 1.05)
    degrees: int = 5  # rotations drawn from -degrees..degrees
    seed: int = 0

    @property
    def tag(self) -> str:
        """Gives a file-name-safe name of everything that changes the picture."""
        return (f"n{self.steps}-s{self.size}-lr{self.lr:g}-d{self.decay:g}-p{self.pad}"
                f"-j{self.jitter}-r{self.degrees}-sc{'_'.join(f'{s:g}' for s in self.scales)}"
                f"-seed{self.seed}")


@dataclass(frozen=True)
class Rendering:
    image: npt.NDArray[np.uint8]  # H x W x 3
    activation: float  # the channel's mean activation for the final image
    cpu_seconds: float
    seconds: float


class _Reached(Exception):
    """Raised by the layer's hook: the rest of the network is not needed."""


class _Image:
    """A Fourier-space, colour-decorrelated image parameterization."""

    def __init__(self, size: int, decay: float, generator: Any) -> None:
        import torch

        fy = np.fft.fftfreq(size)[:, None]
        fx = np.fft.rfftfreq(size)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay
        self.size = size
        # With an orthonormal inverse FFT this matches Lucid's scaling of its spectrum.
        self.scale = torch.tensor(scale, dtype=torch.float32)
        self.spectrum = torch.nn.Parameter(
            0.01 * torch.randn(3, size, size // 2 + 1, 2, generator=generator))
        self.color = torch.tensor(_COLOR)

    def rgb(self) -> Any:
        """Gives the (1, 3, H, W) image in [0, 1]."""
        import torch

        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        spatial = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        mixed = torch.einsum("ij,jhw->ihw", self.color, spatial)
        return torch.sigmoid(mixed)[None]


def _transform(image: Any, settings: RenderSettings, rng: np.random.Generator) -> Any:
    """Gives the image padded, jittered, scaled and rotated at random (one resample)."""
    import torch
    import torch.nn.functional as F

    x = F.pad(image, [settings.pad] * 4, mode="constant", value=0.5)
    scale = float(rng.choice(settings.scales))
    angle = math.radians(float(rng.integers(-settings.degrees, settings.degrees + 1)))
    size = x.shape[-1]
    shift = rng.integers(-settings.jitter, settings.jitter + 1, size=2) * 2.0 / size
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, float(shift[0])], [sin, cos, float(shift[1])]]],
                         dtype=torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def render_channel(net: Any, layer: str, channel: int, *, mean: float | tuple[float, ...],
                   std: float | tuple[float, ...], input_size: int,
                   settings: RenderSettings | None = None) -> Rendering:
    """Gives an image optimized to excite `channel` of the named module of a torch network
    that takes normalized NCHW input ((pixel - mean) / std, pixels 0-255)."""
    import torch

    settings = settings or RenderSettings()
    modules = dict(net.named_modules())
    if layer not in modules:
        raise UnknownLayerError(f"the network has no layer {layer!r}")
    size = settings.size or input_size
    started, cpu_started = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    image = _Image(size, settings.decay, generator)
    probe = _ChannelProbe(net, layer, modules[layer], channel, mean, std)
    with probe.attached():
        optimizer = torch.optim.Adam([image.spectrum], lr=settings.lr)
        for _ in range(settings.steps):
            optimizer.zero_grad()
            loss = -probe(_transform(image.rgb(), settings, rng))
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            final = image.rgb()
            value = float(probe(final, "out"))
    pixels = (final[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    return Rendering(pixels, value, time.process_time() - cpu_started,
                     time.perf_counter() - started)


class _ChannelProbe:
    """One channel of one module of a torch network, read by a forward hook that stops the
    pass there (the rest of the network is not needed)."""

    def __init__(self, net: Any, layer: str, module: Any, channel: int,
                 mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> None:
        import torch

        self.net, self.layer, self.module, self.channel = net, layer, module, channel
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        # A ReLU passes no gradient where it is off, so a dead channel could never wake up:
        # for an activation layer the objective is its input, which it follows monotonically.
        self.rectifier = isinstance(module, torch.nn.ReLU | torch.nn.ReLU6)
        self.captured: dict[str, Any] = {}

    def _hook(self, _module: Any, inputs: Any, output: Any) -> None:
        self.captured["out"] = output
        self.captured["pre"] = inputs[0] if self.rectifier else output
        raise _Reached

    def __call__(self, pixels: Any, key: str = "pre") -> Any:
        """Gives the channel's mean activation (over the map, or the value of a 2-D output)
        for (1, 3, H, W) pixels in [0, 1]: the objective ("pre"), or the module's output."""
        self.captured.clear()
        try:
            self.net((pixels * 255.0 - self.mean) / self.std)
        except _Reached:
            pass
        out = self.captured[key]
        if not 0 <= self.channel < out.shape[1]:
            raise QueryError(f"layer {self.layer} has {out.shape[1]} channels; there is no "
                             f"channel {self.channel}")
        return out[:, self.channel].mean()

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Hooks the module and freezes the network's weights for a while, then restores
        both."""
        handle = self.module.register_forward_hook(self._hook)
        frozen = [p.requires_grad for p in self.net.parameters()]
        try:
            for p in self.net.parameters():
                p.requires_grad_(False)
            yield
        finally:
            handle.remove()
            for p, flag in zip(self.net.parameters(), frozen, strict=True):
                p.requires_grad_(flag)
