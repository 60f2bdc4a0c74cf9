"""What a channel responds to: its feature visualization (rendered once, cached on disk), the
images of a collection that excite it most (worked out in memory, never written to the
catalogue), and where in an image it fires."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from semsearch.atomic import write_bytes_atomically
from semsearch.embed.extractors import decode_input
from semsearch.embed.pooling import pool
from semsearch.errors import BadImageError, NotIndexedError, QueryError, SemsearchError
from semsearch.explore.heatmap import overlay, png
from semsearch.explore.visualize import Rendering, RenderSettings, render_channels
from semsearch.indexing.plan import Progress
from semsearch.models.layers import choose_layers
from semsearch.query.collection import Collection, collection_images
from semsearch.query.context import Context
from semsearch.store import ImageRecord


@dataclass(frozen=True)
class ChannelImage:
    path: Path  # the PNG
    activation: float
    cpu_seconds: float
    seconds: float
    cached: bool


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def check_channel(session: Context, model: str, layer: str, channel: int) -> int:
    """Gives the layer's channel count if `channel` is one of them, else raises."""
    return check_channels(session, model, layer, [channel])


def check_channels(session: Context, model: str, layer: str, channels: Sequence[int]) -> int:
    """Gives the layer's channel count if every one of `channels` is one of them, else
    raises."""
    from semsearch.models.layers import find_layer

    info = find_layer(session.models.layer_table(model), layer, model)
    for channel in channels:
        if not 0 <= channel < info.channels:
            raise QueryError(f"{model} layer {layer} has {info.channels} channels (0 to "
                             f"{info.channels - 1}); there is no channel {channel}")
    return info.channels


# Bumped when the rendering code changes what a picture looks like, so old ones are redone.
RENDER_VERSION = 1

# Channels optimized together in one batch. Every image's activations are held for the
# backward pass (about 60 MB per image at 160 px for lite0's last layer), so a batch is
# bounded; on 2 cores a step costs about as much per image at 4 to 15 images, so six keep
# the memory small and put the first tiles on the page early.
RENDER_BATCH = 6


class RenderBusy(SemsearchError):
    """Another channel is being rendered; try again shortly."""


def _cached(target: Path, info: Path) -> ChannelImage | None:
    if not (target.is_file() and info.is_file()):
        return None
    try:
        meta = json.loads(info.read_text())
        with Image.open(target) as im:
            im.verify()  # a truncated or damaged file is rendered again
        return ChannelImage(target, float(meta["activation"]), float(meta["cpu_seconds"]),
                            float(meta["seconds"]), True)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return None


def _target(session: Context, model: str, layer: str, channel: int,
            settings: RenderSettings) -> Path:
    """Gives where a channel's picture is cached: keyed by the weights, layer, channel,
    every render setting and the rendering code's version, never by how it was rendered
    (alone or in a batch)."""
    spec = session.models.spec(model)
    folder = (session.config.cache_path() / "channels" / f"{_slug(model)}-{spec.weights_id()[:12]}"
              / _slug(layer))
    return folder / f"{channel}-v{RENDER_VERSION}-{settings.tag}.png"


def _store(target: Path, rendering: Rendering, settings: RenderSettings) -> ChannelImage:
    write_bytes_atomically(target, png(rendering.image))
    meta = {"activation": rendering.activation, "cpu_seconds": rendering.cpu_seconds,
            "seconds": rendering.seconds, "settings": asdict(settings)}
    write_bytes_atomically(target.with_suffix(".json"), json.dumps(meta).encode())
    return ChannelImage(target, rendering.activation, rendering.cpu_seconds,
                        rendering.seconds, False)


def cached_channels(session: Context, model: str, layer: str, channels: Sequence[int],
                    settings: RenderSettings | None = None) -> dict[int, ChannelImage]:
    """Gives the channels' pictures that are in the cache, by channel."""
    settings = settings or RenderSettings()
    found = {}
    for channel in dict.fromkeys(channels):
        target = _target(session, model, layer, channel, settings)
        hit = _cached(target, target.with_suffix(".json"))
        if hit is not None:
            found[channel] = hit
    return found


def channel_images(session: Context, model: str, layer: str, channels: Sequence[int],
                   settings: RenderSettings | None = None, *, render: bool = True,
                   wait: bool = True, batch: int = RENDER_BATCH,
                   progress: Progress | None = None) -> list[ChannelImage]:
    """Gives the feature visualizations of the channels, in the order asked, from the disk
    cache or rendered now (if `render` allows, else NotIndexedError) `batch` channels at a
    time, each batch one optimization. One batch runs at a time per model; with `wait`
    false a busy model raises RenderBusy. `progress` hears (optimization steps done, steps
    in all) and may raise to stop between steps; the batches done so far stay cached."""
    settings = settings or RenderSettings()
    check_channels(session, model, layer, channels)
    found = cached_channels(session, model, layer, channels, settings)
    missing = [c for c in dict.fromkeys(channels) if c not in found]
    if missing and not render:
        raise NotIndexedError(f"{model} {layer} channel {missing[0]} is not rendered yet")
    spec = session.models.spec(model)
    steps = len(range(0, len(missing), batch)) * settings.steps
    for start in range(0, len(missing), batch):
        chunk = missing[start:start + batch]
        net, lock = session.models.network(model)
        if not lock.acquire(blocking=wait):
            raise RenderBusy("another channel is being rendered; try again in a few seconds")
        try:
            # Some may have been rendered by another request while this one waited.
            found.update(cached_channels(session, model, layer, chunk, settings))
            chunk = [c for c in chunk if c not in found]
            done = start // batch * settings.steps

            def step(n: int, done: int = done) -> None:
                if progress is not None:
                    progress(done + n, steps)

            renderings = render_channels(net, layer, chunk, mean=spec.mean, std=spec.std,
                                         input_size=spec.preprocess.size, settings=settings,
                                         on_step=step)
        finally:
            lock.release()
        for channel, rendering in zip(chunk, renderings, strict=True):
            found[channel] = _store(_target(session, model, layer, channel, settings),
                                    rendering, settings)
    return [found[c] for c in channels]


def channel_image(session: Context, model: str, layer: str, channel: int,
                  settings: RenderSettings | None = None, *, render: bool = True,
                  wait: bool = True) -> ChannelImage:
    """Gives the feature visualization of a channel from the disk cache (keyed by the
    weights, layer, channel, every render setting and the rendering code's version),
    rendering it now if it is not there and `render` allows (else NotIndexedError). One
    render runs at a time per model; with `wait` false a busy model raises RenderBusy."""
    return channel_images(session, model, layer, [channel], settings, render=render,
                          wait=wait)[0]


@dataclass(frozen=True)
class RenderedLayers:
    """The channel images of several layers of a model, layer by layer, channels in order."""

    model: str
    layers: list[str]
    images: list[ChannelImage]

    @property
    def fresh(self) -> list[ChannelImage]:
        """Gives the images rendered now (not found in the cache)."""
        return [image for image in self.images if not image.cached]


def render_layers(session: Context, model: str, layers: Sequence[str], channels: int,
                  settings: RenderSettings | None = None,
                  progress: Progress | None = None) -> RenderedLayers:
    """Gives the feature visualizations of the first `channels` channels of each layer
    (`auto`: layers spread over the depth), from the cache or rendered now, a layer's
    channels in batches."""
    spec = session.models.registry.get(model)  # a registered model: rendering needs torch
    table = session.models.layer_table(model)
    chosen = choose_layers(table, layers, model, spec.default_layer)
    by_name = {layer.name: layer for layer in table}
    counts = [min(channels, by_name[layer].channels) for layer in chosen]
    total = sum(counts)
    images: list[ChannelImage] = []
    for layer, count in zip(chosen, counts, strict=True):
        before = len(images)

        def step(done: int, steps: int, before: int = before, count: int = count) -> None:
            if progress is not None:  # in images, a batch's share as its steps go
                progress(before + count * done // max(steps, 1), total)

        step(0, 1)
        images.extend(channel_images(session, model, layer, range(count), settings,
                                     progress=step))
    if progress is not None:
        progress(total, total)
    return RenderedLayers(model, chosen, images)


@dataclass(frozen=True)
class TopImage:
    image: ImageRecord
    activation: float  # the channel's strongest response anywhere in the image


_maxima: dict[tuple[str, str, str, str], tuple[list[int], npt.NDArray[np.float32]]] = {}
_maxima_lock = threading.Lock()
_MAXIMA_KEPT = 8


def channel_maxima(session: Context, collection: Collection, model: str, layer: str
                   ) -> tuple[list[int], npt.NDArray[np.float32]]:
    """Gives (image ids, images x channels) of every channel's maximum over the layer's map,
    for the collection's images. Worked out in memory and kept until the collection's files
    change; nothing is written to the catalogue."""
    images = collection_images(session.store, collection)
    digest = hashlib.sha256("".join(f"{r.id}:{r.sha256};" for r in images).encode()).hexdigest()
    key = (model, layer, collection.root, digest)
    with _maxima_lock:
        if key in _maxima:
            return _maxima[key]
        backbone = session.models.backbone(model, [layer])
        spec = session.models.spec(model)
        ids: list[int] = []
        rows: list[npt.NDArray[np.float32]] = []
        batch: list[npt.NDArray[np.uint8]] = []
        pending: list[int] = []

        def flush() -> None:
            if batch:
                maps = backbone.run(np.stack(batch))[layer]
                rows.append(pool(maps, "max"))
                ids.extend(pending)
                batch.clear()
                pending.clear()

        for record in images:
            try:
                pixels, _ = decode_input(spec, session.config.max_pixels, record.path)
            except BadImageError:
                continue  # changed or gone since indexing: left out
            batch.append(pixels)
            pending.append(record.id)
            if len(batch) == _TOP_BATCH:
                flush()
        flush()
        result = (ids, np.concatenate(rows) if rows else np.zeros((0, 0), np.float32))
        _maxima[key] = result
        while len(_maxima) > _MAXIMA_KEPT:
            _maxima.pop(next(iter(_maxima)))
        return result


_TOP_BATCH = 8


def top_activating(session: Context, collection: Collection, model: str, layer: str,
                   channel: int, k: int = 9) -> list[TopImage]:
    """Gives the collection's k images in which the channel fires most strongly (its maximum
    over the map)."""
    check_channel(session, model, layer, channel)
    ids, maxima = channel_maxima(session, collection, model, layer)
    if not ids:
        return []
    order = np.argsort(-maxima[:, channel], kind="stable")[:k]
    images = session.store.images(ids[i] for i in order)
    return [TopImage(images[ids[i]], float(maxima[i, channel])) for i in order
            if ids[i] in images]


def activation_overlay(session: Context, source: str | bytes, model: str, layer: str,
                       channel: int) -> bytes:
    """Gives a PNG of the image as the model sees it (its centre crop) with the channel's
    activation map drawn over it."""
    check_channel(session, model, layer, channel)
    pixels, _ = decode_input(session.models.spec(model), session.config.max_pixels, source)
    maps = session.models.backbone(model, [layer]).run(pixels[None])[layer]
    if maps.ndim != 4:
        raise QueryError(f"{model} layer {layer} has no spatial map to draw")
    return overlay(pixels, maps[0, channel])
