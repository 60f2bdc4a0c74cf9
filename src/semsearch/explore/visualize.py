"""Feature visualization: an image optimized to excite one channel of a layer, in the style of
Lucid (Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017).

The image is parameterized in Fourier space, with each frequency scaled by 1/f so that
optimization is not dominated by high-frequency noise, and in a decorrelated colour space
(the square root of ImageNet's colour correlation), squashed into [0, 1] by a sigmoid. Every
step sees it padded, jittered, scaled and rotated at random, so the result is an image the
channel responds to robustly, not an adversarial pattern. The objective is the channel's mean
activation. The forward pass stops at the layer, so early layers render fast. Many channels
of a layer render as one batch, as Lucid does: an image per channel, each with its own
objective, one forward and backward pass per step for the lot."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
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
    """A batch of Fourier-space, colour-decorrelated image parameterizations, all starting
    from the same seeded draw (so each image of a batch starts where its single render
    would)."""

    def __init__(self, count: int, size: int, decay: float, generator: Any) -> None:
        import torch

        fy = np.fft.fftfreq(size)[:, None]
        fx = np.fft.rfftfreq(size)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay
        self.size = size
        # With an orthonormal inverse FFT this matches Lucid's scaling of its spectrum.
        self.scale = torch.tensor(scale, dtype=torch.float32)
        start = 0.01 * torch.randn(3, size, size // 2 + 1, 2, generator=generator)
        self.spectrum = torch.nn.Parameter(start.expand(count, *start.shape).clone())
        self.color = torch.tensor(_COLOR)

    def rgb(self) -> Any:
        """Gives the (N, 3, H, W) images in [0, 1]."""
        import torch

        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        spatial = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        mixed = torch.einsum("ij,njhw->nihw", self.color, spatial)
        return torch.sigmoid(mixed)


def _transform(images: Any, settings: RenderSettings, rng: np.random.Generator) -> Any:
    """Gives the images padded, jittered, scaled and rotated at random (one resample, the
    same draw for every image of the batch, as in its single render)."""
    import torch
    import torch.nn.functional as F

    x = F.pad(images, [settings.pad] * 4, mode="constant", value=0.5)
    scale = float(rng.choice(settings.scales))
    angle = math.radians(float(rng.integers(-settings.degrees, settings.degrees + 1)))
    size = x.shape[-1]
    shift = rng.integers(-settings.jitter, settings.jitter + 1, size=2) * 2.0 / size
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, float(shift[0])], [sin, cos, float(shift[1])]]],
                         dtype=torch.float32).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def render_channel(net: Any, layer: str, channel: int, *, mean: float | tuple[float, ...],
                   std: float | tuple[float, ...], input_size: int,
                   settings: RenderSettings | None = None) -> Rendering:
    """Gives an image optimized to excite `channel` of the named module of a torch network
    that takes normalized NCHW input ((pixel - mean) / std, pixels 0-255)."""
    return render_channels(net, layer, [channel], mean=mean, std=std, input_size=input_size,
                           settings=settings)[0]


def render_channels(net: Any, layer: str, channels: Sequence[int], *,
                    mean: float | tuple[float, ...], std: float | tuple[float, ...],
                    input_size: int, settings: RenderSettings | None = None,
                    on_step: Callable[[int], None] | None = None) -> list[Rendering]:
    """Gives one image per channel, optimized together as one batch (Lucid's way: each
    image its own objective, one forward and backward pass per step for all of them).
    The images do not interact (the network runs in eval mode, Adam works per element), so
    each is its single render's, computed at once; the seconds are the batch's shared out.
    `on_step` hears the number of steps done, and may raise to stop."""
    import torch

    settings = settings or RenderSettings()
    modules = dict(net.named_modules())
    if layer not in modules:
        raise UnknownLayerError(f"the network has no layer {layer!r}")
    if not channels:
        return []
    size = settings.size or input_size
    started, cpu_started = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    image = _Image(len(channels), size, settings.decay, generator)
    probe = _ChannelProbe(net, layer, modules[layer], list(channels), mean, std)
    with probe.attached():
        optimizer = torch.optim.Adam([image.spectrum], lr=settings.lr)
        for step in range(settings.steps):
            optimizer.zero_grad()
            # A sum: each image's gradient is that of its own objective alone.
            loss = -probe(_transform(image.rgb(), settings, rng)).sum()
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(step + 1)
        with torch.no_grad():
            final = image.rgb()
            values = probe(final, "out").tolist()
    pixels = (final.permute(0, 2, 3, 1).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    share = len(channels)
    cpu, wall = time.process_time() - cpu_started, time.perf_counter() - started
    return [Rendering(pixels[i], float(values[i]), cpu / share, wall / share)
            for i in range(len(channels))]


class _ChannelProbe:
    """One channel per image of one module of a torch network, read by a forward hook that
    stops the pass there (the rest of the network is not needed)."""

    def __init__(self, net: Any, layer: str, module: Any, channels: list[int],
                 mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> None:
        import torch

        self.net, self.layer, self.module, self.channels = net, layer, module, channels
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
        """Gives, for (N, 3, H, W) pixels in [0, 1], image i's mean activation of channel i
        (over the map, or the value of a 2-D output): the objective ("pre"), or the
        module's output."""
        import torch

        self.captured.clear()
        try:
            self.net((pixels * 255.0 - self.mean) / self.std)
        except _Reached:
            pass
        out = self.captured[key]
        for channel in self.channels:
            if not 0 <= channel < out.shape[1]:
                raise QueryError(f"layer {self.layer} has {out.shape[1]} channels; there is "
                                 f"no channel {channel}")
        picked = out[torch.arange(out.shape[0]), self.channels]
        return picked.reshape(picked.shape[0], -1).mean(dim=1)

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
