"""What a channel responds to: its feature visualization (rendered once, cached on disk), the
images of a collection that excite it most, and where in an image it fires."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semsearch.atomic import write_bytes_atomically
from semsearch.collections import Collection
from semsearch.errors import NotIndexedError, QueryError
from semsearch.explore.heatmap import overlay, png
from semsearch.explore.visualize import RenderSettings, render_channel
from semsearch.features import decode_input
from semsearch.featureset import FeatureSet
from semsearch.indexing import index_folder
from semsearch.models.summary import layers as layer_table
from semsearch.session import Session
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


def check_channel(session: Session, model: str, layer: str, channel: int) -> int:
    """Gives the layer's channel count if `channel` is one of them, else raises."""
    from semsearch.models.network import find_layer

    info = find_layer(layer_table(session.registry, model, session.config.onnx_input()),
                      layer, model)
    if not 0 <= channel < info.channels:
        raise QueryError(f"{model} layer {layer} has {info.channels} channels (0 to "
                         f"{info.channels - 1}); there is no channel {channel}")
    return info.channels


def channel_image(session: Session, model: str, layer: str, channel: int,
                  settings: RenderSettings | None = None, *, render: bool = True
                  ) -> ChannelImage:
    """Gives the feature visualization of a channel from the disk cache (keyed by the
    weights, layer, channel and every render setting), rendering it now if it is not there
    and `render` allows (else NotIndexedError)."""
    settings = settings or RenderSettings()
    check_channel(session, model, layer, channel)
    spec = session.spec(model)
    folder = (session.cache_dir / "channels" / f"{_slug(model)}-{spec.weights_id()[:12]}"
              / _slug(layer))
    target = folder / f"{channel}-{settings.tag}.png"
    info = target.with_suffix(".json")
    if target.is_file() and info.is_file():
        try:
            meta = json.loads(info.read_text())
            return ChannelImage(target, float(meta["activation"]), float(meta["cpu_seconds"]),
                                float(meta["seconds"]), True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry is rendered again
    if not render:
        raise NotIndexedError(f"{model} {layer} channel {channel} is not rendered yet")
    net, lock = session.network(model)
    with lock:
        rendering = render_channel(net, layer, channel, mean=spec.mean, std=spec.std,
                                   input_size=spec.preprocess.size, settings=settings)
    write_bytes_atomically(target, png(rendering.image))
    meta = {"activation": rendering.activation, "cpu_seconds": rendering.cpu_seconds,
            "seconds": rendering.seconds, "settings": asdict(settings)}
    write_bytes_atomically(info, json.dumps(meta).encode())
    return ChannelImage(target, rendering.activation, rendering.cpu_seconds,
                        rendering.seconds, False)


@dataclass(frozen=True)
class TopImage:
    image: ImageRecord
    activation: float  # the channel's strongest response anywhere in the image


def top_activating(session: Session, collection: Collection, model: str, layer: str,
                   channel: int, k: int = 9) -> list[TopImage]:
    """Gives the collection's k images in which the channel fires most strongly (its maximum
    over the map). The per-channel maxima are a feature set (`model@layer/max`) kept in the
    catalogue, so this embeds only images not seen before."""
    check_channel(session, model, layer, channel)
    fs = FeatureSet(model, layer, "max")
    extractor = session.extractor(fs)
    index_folder(session.store, extractor, collection.root,
                 batch_size=session.config.batch_size, workers=session.config.workers)
    record = session.store.feature_set(fs, extractor.preprocessing)
    ids, vectors = session.store.vectors_under(record.id, collection.root)
    if not len(ids):
        return []
    order = np.argsort(-vectors[:, channel], kind="stable")[:k]
    images = session.store.images(ids[order])
    return [TopImage(images[int(ids[i])], float(vectors[i, channel])) for i in order
            if int(ids[i]) in images]


def activation_overlay(session: Session, source: str | bytes, model: str, layer: str,
                       channel: int) -> bytes:
    """Gives a PNG of the image as the model sees it (its centre crop) with the channel's
    activation map drawn over it."""
    check_channel(session, model, layer, channel)
    pixels, _ = decode_input(session.spec(model), session.config.max_pixels, source)
    maps = session.backbone(model, [layer]).run(pixels[None])[layer]
    if maps.ndim != 4:
        raise QueryError(f"{model} layer {layer} has no spatial map to draw")
    return overlay(pixels, maps[0, channel])
