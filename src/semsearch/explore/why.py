"""Why two images match, and what the classifier sees.

Similarity maps: for a pooled feature set, the cosine similarity of two images splits exactly
into a sum over the locations of either image's map. With GeM pooling (p; avg is p = 1),
v_c = (mean_x F(x, c)^p)^(1/p), so for unit vectors u = v/|v| of the other image,
    cos = sum_c u'_c v_c / |v| = sum_x [ sum_c u'_c v_c^(1-p) F(x, c)^p / (HW |v|) ],
and the bracket is location x's share. With max pooling each channel's share sits at its
maximum. A composite feature set (models joined by +) adds its models' maps, each weighing
1/P as in the concatenated vector. An adapter's projection is not drawn: the maps are those
of its base feature set.

Class maps (CAM): the classifier is a linear layer on the average of the last map, so a
class's logit splits over locations as sum_c W_kc F(x, c)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from semsearch.embed.extractors import decode_input
from semsearch.embed.pooling import GEM_EPS
from semsearch.errors import FeatureSetError, QueryError
from semsearch.explore.heatmap import overlay
from semsearch.featureset import FeatureSet, gem_exponent
from semsearch.query.context import Context

_GRID = 64  # maps of a composite's models are resampled to this grid before adding


@dataclass(frozen=True)
class SimilarityMaps:
    similarity: float  # cosine similarity of the (base) feature set's vectors
    query_png: bytes
    result_png: bytes
    query_map: npt.NDArray[np.float64]  # the shares, summing to `similarity` (each model's
    result_map: npt.NDArray[np.float64]  # maps resampled and added for a composite)


def _exponent(pooling: str) -> float | None:
    if pooling == "avg":
        return 1.0
    if pooling == "max":
        return None
    p = gem_exponent(pooling)
    if p is None:
        raise FeatureSetError(f"similarity maps need avg, max or gem pooling, not {pooling}")
    return p


def share_map(maps: npt.NDArray[np.float32], other: npt.NDArray[np.float64],
              pooling: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Gives, for one image's (C, H, W) map, each location's share of the cosine similarity
    with another image's unit vector `other`, and the image's own pooled vector."""
    f = np.asarray(maps, dtype=np.float64)
    c, h, w = f.shape
    p = _exponent(pooling)
    if p is None:
        flat = f.reshape(c, -1)
        v = flat.max(axis=1)
        shares = np.zeros(h * w)
        np.add.at(shares, flat.argmax(axis=1), other * v)
        return shares.reshape(h, w) / max(float(np.linalg.norm(v)), 1e-12), v
    if pooling != "avg":
        f = np.maximum(f, GEM_EPS)  # GeM clamps as pooling does, gem1 included
    powered = f ** p
    v = powered.mean(axis=(1, 2)) ** (1.0 / p) if p != 1.0 else f.mean(axis=(1, 2))
    weight = other * np.where(v > 0, v, 1e-12) ** (1.0 - p)
    shares = np.tensordot(weight, powered, axes=1) / (h * w)
    return shares / max(float(np.linalg.norm(v)), 1e-12), v


def _resample(values: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Gives the map resampled to size x size with the same sum: each cell scaled by the
    area it covers, and the small difference interpolation leaves spread evenly."""
    image = Image.fromarray(values.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR)
    out = np.asarray(image, dtype=np.float64) * (values.size / (size * size))
    return out + (values.sum() - out.sum()) / out.size


def similarity_maps(session: Context, fs: FeatureSet, query: str | bytes,
                    result: str | bytes) -> SimilarityMaps:
    """Gives where two images' similarity comes from, for a feature set with a spatial
    layer: each image with its share map drawn over it."""
    models = fs.models
    shares_q: list[npt.NDArray[np.float64]] = []
    shares_r: list[npt.NDArray[np.float64]] = []
    similarity = 0.0
    shown: list[npt.NDArray[np.uint8]] = []
    for model in models:
        spec = session.models.spec(model)
        pixels_q, _ = decode_input(spec, session.config.max_pixels, query)
        pixels_r, _ = decode_input(spec, session.config.max_pixels, result)
        backbone = session.models.backbone(model, [fs.layer])
        out = backbone.run(np.stack([pixels_q, pixels_r]))[fs.layer]
        if out.ndim != 4:
            raise QueryError(f"{fs.layer} has no spatial map: choose a convolutional layer")
        # Each image's own vector first, then its shares against the other's unit vector.
        _, vq = share_map(out[0], np.zeros(out.shape[1]), fs.pooling)
        _, vr = share_map(out[1], np.zeros(out.shape[1]), fs.pooling)
        uq = vq / max(float(np.linalg.norm(vq)), 1e-12)
        ur = vr / max(float(np.linalg.norm(vr)), 1e-12)
        mq, _ = share_map(out[0], ur, fs.pooling)
        mr, _ = share_map(out[1], uq, fs.pooling)
        similarity += float(uq @ ur) / len(models)
        shares_q.append(mq / len(models))
        shares_r.append(mr / len(models))
        shown.append(np.stack([pixels_q, pixels_r]))
    if len(models) > 1:
        map_q = sum(_resample(m, _GRID) for m in shares_q)
        map_r = sum(_resample(m, _GRID) for m in shares_r)
    else:
        map_q, map_r = shares_q[0], shares_r[0]
    return SimilarityMaps(similarity, overlay(shown[0][0], np.maximum(map_q, 0)),
                          overlay(shown[0][1], np.maximum(map_r, 0)), np.asarray(map_q),
                          np.asarray(map_r))


@dataclass(frozen=True)
class ClassGuess:
    index: int
    name: str
    probability: float


def _classifier(session: Context, model: str) -> tuple[str, npt.NDArray[np.float32]]:
    """Gives the layer the classifier reads (its input map) and its weights (classes x C)."""
    spec = session.models.spec(model)
    if spec.classifier is None:
        raise FeatureSetError(f"{model} has no classifier")
    net, _ = session.models.network(model)
    modules = dict(net.named_modules())
    weights = modules[spec.classifier].weight.detach().numpy()
    return spec.default_layer, weights


def top_classes(session: Context, model: str, source: str | bytes,
                k: int = 5) -> list[ClassGuess]:
    """Gives the model's k most probable ImageNet classes for an image."""
    from semsearch.models.layers import PROBS

    spec = session.models.spec(model)
    pixels, _ = decode_input(spec, session.config.max_pixels, source)
    probs = session.models.backbone(model, [PROBS]).run(pixels[None])[PROBS][0]
    names = spec.class_names() if spec.class_names else None
    order = np.argsort(-probs)[:k]
    return [ClassGuess(int(i), names[i] if names else f"class {i}", float(probs[i]))
            for i in order]


@dataclass(frozen=True)
class SeenBy:
    """What a classifier sees in an image: its top classes, and where it sees the first."""

    classes: list[ClassGuess]
    cam_png: bytes


def seen_by(session: Context, model: str, source: str | bytes, k: int = 5) -> SeenBy:
    """Gives the model's k most probable classes for an image and the first one's activation
    map, in one call for an image the server does not keep (an upload is sent once)."""
    classes = top_classes(session, model, source, k)
    return SeenBy(classes, class_map(session, model, source, classes[0].index))


def class_map(session: Context, model: str, source: str | bytes, class_index: int) -> bytes:
    """Gives a PNG of the image (as the model sees it) with the class's activation map."""
    layer, weights = _classifier(session, model)
    if not 0 <= class_index < len(weights):
        raise QueryError(f"{model} has {len(weights)} classes; there is no class {class_index}")
    spec = session.models.spec(model)
    pixels, _ = decode_input(spec, session.config.max_pixels, source)
    maps = session.models.backbone(model, [layer]).run(pixels[None])[layer][0]
    cam = np.tensordot(weights[class_index].astype(np.float64), maps, axes=1)
    return overlay(pixels, np.maximum(cam, 0))
