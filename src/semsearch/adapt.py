"""`semsearch adapt`: a small linear projection of frozen features, learned from class folders
so that images of a class come together, saved as an adapter that `index` and `search` use.

The loss is a normalized softmax over learned class proxies (a proxy-based metric-learning
loss): each projected, unit-length vector is pulled towards its class's proxy and pushed from
the others. A per-class held-out split is set aside before training and used only to measure
retrieval among held-out images, before and after, so the reported gain is on images the
projection never saw."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from semsearch.errors import EvaluationError
from semsearch.evaluate import Scores, evaluate
from semsearch.expansion import l2_normalize, project
from semsearch.features import adapted_input_key
from semsearch.featureset import FeatureSet, check_adapter_name
from semsearch.indexing import IndexReport, Progress, index_folder
from semsearch.session import Session
from semsearch.store import AdaptedVectors, AdapterRecord, weights_digest

Vectors = npt.NDArray[np.float32]


def split_per_class(paths: list[str], labels: list[str], heldout: float,
                    seed: int = 0) -> npt.NDArray[np.bool_]:
    """Gives a mask of the held-out images: in each class with two images or more, the
    fraction `heldout` of them (at least one, never all), drawn reproducibly by seed."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(paths), dtype=bool)
    if heldout <= 0:
        return held
    order = np.argsort(np.asarray(paths))
    by_class: dict[str, list[int]] = {}
    for i in order:
        by_class.setdefault(labels[i], []).append(int(i))
    for label in sorted(by_class):
        members = np.asarray(by_class[label])
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, round(len(members) * heldout)))
        held[rng.permutation(members)[:count]] = True
    return held


@dataclass(frozen=True)
class TrainSettings:
    dim: int = 128
    epochs: int = 300
    scale: float = 8.0  # inverse temperature of the softmax over proxies
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch: int = 4096
    seed: int = 0


def train_projection(vectors: Vectors, classes: npt.NDArray[np.int64],
                     settings: TrainSettings) -> tuple[Vectors, float]:
    """Gives a (dim_in x dim) projection learned from labeled vectors, and the last loss."""
    import torch

    torch.manual_seed(settings.seed)
    x = torch.from_numpy(l2_normalize(vectors))
    y = torch.from_numpy(np.asarray(classes, dtype=np.int64))
    n, dim_in = x.shape
    dim = min(settings.dim, dim_in)
    weights = torch.nn.Parameter(torch.empty(dim_in, dim))
    torch.nn.init.orthogonal_(weights)
    proxies = torch.nn.Parameter(torch.randn(int(y.max()) + 1, dim))
    optimizer = torch.optim.AdamW([weights, proxies], lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    batch = min(n, settings.batch)
    steps_per_epoch = math.ceil(n / batch)
    generator = torch.Generator().manual_seed(settings.seed)
    loss = torch.tensor(0.0)
    for _ in range(settings.epochs):
        order = (torch.randperm(n, generator=generator) if steps_per_epoch > 1
                 else torch.arange(n))
        for step in range(steps_per_epoch):
            rows = order[step * batch:(step + 1) * batch]
            z = torch.nn.functional.normalize(x[rows] @ weights, dim=1)
            p = torch.nn.functional.normalize(proxies, dim=1)
            loss = torch.nn.functional.cross_entropy(settings.scale * z @ p.T, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return weights.detach().numpy().astype(np.float32), float(loss.detach())


@dataclass(frozen=True)
class AdaptResult:
    adapter: AdapterRecord
    feature_set: FeatureSet  # the adapted feature set, ready for index and search
    root: str
    classes: int
    trained_on: int
    heldout: int
    before: Scores | None  # retrieval among held-out images, base vectors
    after: Scores | None  # the same, adapted vectors
    final_loss: float
    train_seconds: float
    report: IndexReport


def adapt(session: Session, root: str, name: str, *, heldout: float = 0.3,
          settings: TrainSettings | None = None,
          progress: Progress | None = None) -> AdaptResult:
    """Learns an adapter for the configured feature set from a labeled folder (class =
    folder name), stores it and the folder's adapted vectors, and gives the held-out
    evaluation."""
    settings = settings or TrainSettings()
    check_adapter_name(name)
    if not 0 <= heldout <= 0.9:
        raise EvaluationError(f"the held-out fraction must be from 0 to 0.9, not {heldout}")
    if settings.dim < 2 or settings.epochs < 1:
        raise EvaluationError("the projection needs at least 2 dimensions and 1 epoch")
    base = session.plain_feature_set()
    extractor = session.extractor(base)
    config = session.config
    report = index_folder(session.store, extractor, root, batch_size=config.batch_size,
                          workers=config.workers, progress=progress)
    record = session.store.feature_set(base, extractor.preprocessing)
    images = session.store.images_under(report.root)
    ids, vectors = session.store.vectors(record.id)
    keep = np.isin(ids, np.fromiter((r.id for r in images.values()), np.int64))
    ids, vectors = ids[keep], vectors[keep]
    by_id = {r.id: r for r in images.values()}
    paths = [by_id[int(i)].path for i in ids]
    labels = [by_id[int(i)].label for i in ids]
    names, classes = np.unique(np.asarray(labels), return_inverse=True)
    if len(names) < 2:
        raise EvaluationError(f"{report.root} holds {len(ids)} readable image(s) in "
                              f"{len(names)} class folder(s); adapting needs at least two "
                              "classes (one folder per class)")

    held = split_per_class(paths, labels, heldout, settings.seed)
    train = ~held
    started = time.perf_counter()
    weights, loss = train_projection(vectors[train], classes[train], settings)
    seconds = time.perf_counter() - started
    before = after = None
    if held.sum() >= 2 and len(set(np.asarray(labels)[held])) >= 2:
        metric = session.metric("cosine")
        held_labels = [label for label, h in zip(labels, held, strict=True) if h]
        before = evaluate(l2_normalize(vectors[held]), held_labels, metric, config.k).overall
        after = evaluate(project(vectors[held], weights), held_labels, metric,
                         config.k).overall

    info = {"root": report.root, "classes": names.tolist(), "trained_on": int(train.sum()),
            "heldout_ids": ids[held].tolist(), "heldout_fraction": heldout,
            "settings": asdict(settings), "final_loss": loss, "train_seconds": seconds,
            "before": asdict(before) if before else None,
            "after": asdict(after) if after else None}
    adapted = base.adapted(name)
    preprocessing = adapted_input_key(record.preprocessing, weights_digest(weights))
    saved = session.store.save_adapter(
        name, base, record.preprocessing, weights, json.dumps(info),
        AdaptedVectors(adapted, preprocessing, ids, project(vectors, weights)))
    session.catalog.remove_orphans()
    return AdaptResult(saved, adapted, report.root, len(names), int(train.sum()),
                       int(held.sum()), before, after, loss, seconds, report)
