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
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from semsearch.embed.extractors import adapted_input_key
from semsearch.errors import (
    ConfigError,
    EvaluationError,
    FeatureSetError,
    NotIndexedError,
    QueryError,
)
from semsearch.evaluate.sweep import labeled_files
from semsearch.featureset import FeatureSet, check_adapter_name
from semsearch.images import real_path
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport, Progress
from semsearch.query.context import Context
from semsearch.ranking import Scores, evaluate, evaluate_relevance
from semsearch.store import AdaptedVectors, AdapterRecord, FeatureSetRecord, weights_digest
from semsearch.vectors import l2_normalize, project

Vectors = npt.NDArray[np.float32]


def split_per_class(paths: list[str], labels: list[str], heldout: float, seed: int = 0,
                    contents: list[str] | None = None) -> npt.NDArray[np.bool_]:
    """Gives a mask of the held-out images, drawn reproducibly by seed: in each class, the
    fraction `heldout` of its distinct images (by `contents`, e.g. content hashes, so copies
    of one image never fall on both sides); at least two where the class has four or more,
    so a held-out query has a held-out match, and never fewer than two left to train on."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(paths), dtype=bool)
    if heldout <= 0:
        return held
    keys = contents if contents is not None else paths
    units: dict[str, dict[str, list[int]]] = {}
    for i in np.argsort(np.asarray(paths)):
        units.setdefault(labels[i], {}).setdefault(keys[i], []).append(int(i))
    for label in sorted(units):
        groups = list(units[label].values())
        n = len(groups)
        if n < 2:
            continue
        count = round(n * heldout)
        count = max(count, 2 if n >= 4 else 1)
        count = min(count, n - 2 if n >= 4 else n - 1)
        for g in rng.permutation(n)[:count]:
            held[groups[g]] = True
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
                     settings: TrainSettings, targets: Vectors | None = None
                     ) -> tuple[Vectors, float]:
    """Gives a (dim_in x dim) projection learned from labeled vectors, and the last loss.
    The proxies are learned, or, with `targets` (one vector per class, e.g. the sentence
    embeddings of the class names), fixed to them: the projection then maps images into
    the targets' space."""
    import torch

    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.from_numpy(l2_normalize(vectors))
    y = torch.from_numpy(np.asarray(classes, dtype=np.int64))
    n, dim_in = x.shape
    dim = min(settings.dim, dim_in) if targets is None else targets.shape[1]
    weights = torch.nn.Parameter(torch.empty(dim_in, dim))
    with torch.no_grad():
        torch.nn.init.orthogonal_(weights, generator=generator)
    proxies: torch.Tensor
    if targets is None:
        proxies = torch.nn.Parameter(torch.randn(int(y.max()) + 1, dim, generator=generator))
        trained = [weights, proxies]
    else:
        proxies = torch.from_numpy(l2_normalize(targets))
        trained = [weights]
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=settings.weight_decay)
    batch = min(n, settings.batch)
    steps_per_epoch = math.ceil(n / batch)
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


def _text_before_after(session: Context, root: str, ids: npt.NDArray[np.int64],
                       adapted: Vectors, labels: list[str], names: npt.NDArray[np.str_],
                       targets: Vectors, k: int) -> tuple[Scores | None, Scores]:
    """Gives search by class names among the held-out images: zero-shot (ConSE, when the
    model has a classifier), and with the text adapter."""
    from semsearch.query.words import index_text, text_vectors

    present = sorted(set(labels))
    rows = [int(np.flatnonzero(names == label)[0]) for label in present]
    after = _text_scores(targets[rows], adapted, labels, present, k)
    try:
        index_text(session, root)
        all_ids, zero_shot = text_vectors(session, root)
    except (NotIndexedError, FeatureSetError, QueryError):
        return None, after  # no ImageNet classifier: nothing to compare with
    position = {int(i): n for n, i in enumerate(all_ids)}
    before = _text_scores(targets[rows], zero_shot[[position[int(i)] for i in ids]], labels,
                          present, k)
    return before, after


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
    measured: int  # held-out images the scores are over (classes with two held out or more)
    final_loss: float
    train_seconds: float
    report: IndexReport


def folder_words(folder: str) -> str:
    """Gives a class folder's name as words (`water_lilly` -> "water lilly")."""
    return " ".join(folder.replace("_", " ").replace("-", " ").split()).lower()


def _text_scores(queries: Vectors, vectors: Vectors, labels: list[str], words: list[str],
                 k: int) -> Scores:
    """Gives text-to-image retrieval scores: each class's words as a query, the images of
    that class relevant."""
    order = np.argsort(-(queries @ l2_normalize(vectors).T), axis=1)
    rel = np.asarray(labels)[order] == np.asarray(words)[:, None]
    return evaluate_relevance(rel, words, k).overall


def read_captions(csv_path: str, root: str) -> dict[str, str]:
    """Gives {real path: caption} from a CSV of `path,caption` rows (a header row and a
    byte-order mark are optional; relative paths are relative to root). Raises ConfigError
    on a malformed file, a path given twice, or rows none of which lie under root."""
    import csv

    captions: dict[str, str] = {}
    lines: dict[str, int] = {}
    prefix = real_path(root).rstrip(os.sep) + os.sep
    outside = 0
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if not row or (number == 1 and [c.strip().lower() for c in row[:2]] == [
                        "path", "caption"]):
                    continue
                if len(row) < 2 or not row[0].strip() or not row[1].strip():
                    raise ConfigError(f"{csv_path} line {number}: expected `path,caption`")
                path = real_path(os.path.join(root, row[0].strip()))
                if not path.startswith(prefix):
                    outside += 1
                    continue
                if path in lines:
                    raise ConfigError(f"{csv_path} line {number}: {row[0].strip()} already has "
                                      f"a caption (line {lines[path]}); give one per image")
                lines[path] = number
                captions[path] = " ".join(row[1].split())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read captions from {csv_path}: {exc}") from None
    if not captions:
        where = f" ({outside} row(s) name files outside {root})" if outside else ""
        raise ConfigError(f"{csv_path} has no `path,caption` rows for images under "
                          f"{root}{where}")
    return captions


def adapt(session: Context, root: str, name: str, *, heldout: float = 0.3,
          settings: TrainSettings | None = None, text: bool = False,
          captions: dict[str, str] | None = None,
          progress: Progress | None = None) -> AdaptResult:
    """Learns an adapter for the configured feature set from a labeled folder (class =
    folder name), stores it and the folder's adapted vectors, and gives the held-out
    evaluation. With `text`, the adapter maps images into the sentence model's space, the
    folder names' embeddings as fixed targets (or, given `captions` {path: caption}, each
    image's caption's), so words search the adapted vectors; it is evaluated as search by
    the class names (captions) among the held-out images, against zero-shot search by words
    on the same images."""
    settings = settings or TrainSettings()
    _check_request(name, heldout, settings)
    captioned = captions is not None
    text = text or captioned
    root_path, labels_by_path = _labels(root, captions)
    data = _embed_labeled(session, root_path, labels_by_path, progress)
    # Captions are mostly one per image: hold out a fraction of all images instead, and
    # measure each held-out caption finding its own image among the held-out ones.
    held = split_per_class(data.paths, [""] * len(data.paths) if captioned else data.labels,
                           heldout, settings.seed, contents=data.shas)
    train = ~held
    started = time.perf_counter()
    words = [str(n) if captioned else folder_words(str(n)) for n in data.names]
    targets = session.text_model().embed(words) if text else None
    weights, loss = _train(data, train, settings, targets)
    seconds = time.perf_counter() - started
    before, after, measured = _before_after(session, data, held, weights, targets, text,
                                            captioned)
    info = {"root": data.report.root, "classes": data.names.tolist(), "text": text,
            "trained_on": int(train.sum()),
            "heldout_ids": data.ids[held].tolist(), "heldout_fraction": heldout,
            "settings": asdict(settings), "final_loss": loss, "train_seconds": seconds,
            "before": asdict(before) if before else None,
            "after": asdict(after) if after else None}
    adapted = data.base.adapted(name)
    preprocessing = adapted_input_key(data.record.preprocessing, weights_digest(weights))
    saved = session.store.save_adapter(
        name, data.base, data.record.preprocessing, weights, json.dumps(info),
        AdaptedVectors(adapted, preprocessing, data.ids, project(data.vectors, weights)))
    session.catalog.remove_orphans()
    return AdaptResult(saved, adapted, data.report.root, len(data.names), int(train.sum()),
                       int(held.sum()), before, after, int(measured.sum()) if before else 0,
                       loss, seconds, data.report)


def _check_request(name: str, heldout: float, settings: TrainSettings) -> None:
    """Raises before any work if the adapter's name or the settings cannot be used."""
    check_adapter_name(name)
    if not 0 <= heldout <= 0.9:
        raise EvaluationError(f"the held-out fraction must be from 0 to 0.9, not {heldout}")
    if settings.dim < 2 or settings.epochs < 1:
        raise EvaluationError("the projection needs at least 2 dimensions and 1 epoch")


def _labels(root: str, captions: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """Gives the folder's real path and {path: label} for the images under it: the class
    folder's name, or the image's caption."""
    if captions is None:
        return labeled_files(root)  # refused before any embedding
    root_path = real_path(root)
    resolved = {real_path(path): caption for path, caption in captions.items()}
    labels_by_path = {path: caption for path, caption in resolved.items()
                      if path.startswith(root_path.rstrip(os.sep) + os.sep)}
    if len(set(labels_by_path.values())) < 2:
        raise EvaluationError(f"the captions name fewer than two different texts for "
                              f"images under {root_path}")
    return root_path, labels_by_path


@dataclass(frozen=True)
class _Labeled:
    """The labeled images of a folder with their base vectors, in one order."""

    root: str  # the folder's real path
    report: IndexReport
    base: FeatureSet
    record: FeatureSetRecord
    ids: npt.NDArray[np.int64]
    vectors: Vectors
    paths: list[str]
    labels: list[str]
    shas: list[str]
    names: npt.NDArray[np.str_]  # the distinct labels, sorted
    classes: npt.NDArray[np.int64]  # each image's label as a position in names


def _embed_labeled(session: Context, root_path: str, labels_by_path: dict[str, str],
                   progress: Progress | None) -> _Labeled:
    """Gives the labeled images' vectors of the plain feature set, indexing the folder first
    (what is already in the catalogue is not embedded again)."""
    base = session.models.plain_feature_set()
    extractor = session.models.extractor(base)
    config = session.config
    report = index_folder(session.store, extractor, root_path, batch_size=config.batch_size,
                          workers=config.workers, progress=progress)
    record = session.store.feature_set(base, extractor.preprocessing)
    by_id = {r.id: r for r in session.store.images_under(root_path).values()
             if r.path in labels_by_path}
    ids, vectors = session.store.vectors_under(record.id, root_path)
    keep = np.isin(ids, np.fromiter(by_id, np.int64))
    ids, vectors = ids[keep], vectors[keep]
    paths = [by_id[int(i)].path for i in ids]
    labels = [labels_by_path[path] for path in paths]
    names, classes = np.unique(np.asarray(labels), return_inverse=True)
    if len(names) < 2:
        raise EvaluationError(f"only {len(ids)} image(s) in {len(names)} class(es) of "
                              f"{root_path} could be embedded; adapting needs two classes")
    return _Labeled(root_path, report, base, record, ids, vectors, paths, labels,
                    [by_id[int(i)].sha256 for i in ids], names, classes)


def _train(data: _Labeled, train: npt.NDArray[np.bool_], settings: TrainSettings,
           targets: Vectors | None) -> tuple[Vectors, float]:
    """Gives the projection learned from the training images, and its last loss."""
    if targets is None:
        return train_projection(data.vectors[train], data.classes[train], settings)
    # Only the training images' texts are targets: a held-out image's caption must not
    # shape the projection, even as a negative.
    used, train_classes = np.unique(data.classes[train], return_inverse=True)
    return train_projection(data.vectors[train], train_classes, settings, targets[used])


def _before_after(session: Context, data: _Labeled, held: npt.NDArray[np.bool_],
                  weights: Vectors, targets: Vectors | None, text: bool, captioned: bool
                  ) -> tuple[Scores | None, Scores | None, npt.NDArray[np.bool_]]:
    """Gives retrieval among the held-out images before and after the projection (None,
    None when too few are held out to measure), and which images they were measured on."""
    # Measured on held-out images of classes with two or more held out: a query alone in
    # its class has nothing to find.
    labels = data.labels
    held_counts = Counter(label for label, h in zip(labels, held, strict=True) if h)
    measured = held & np.array([held_counts[label] >= (1 if captioned else 2)
                                for label in labels], dtype=bool)
    measured_labels = [label for label, m in zip(labels, measured, strict=True) if m]
    if len(set(measured_labels)) < (1 if text else 2):
        return None, None, measured
    k = session.config.k
    vectors = data.vectors[measured]
    if targets is None:
        metric = session.metric("cosine")
        return (evaluate(l2_normalize(vectors), measured_labels, metric, k).overall,
                evaluate(project(vectors, weights), measured_labels, metric, k).overall,
                measured)
    before, after = _text_before_after(session, data.root, data.ids[measured],
                                       project(vectors, weights), measured_labels,
                                       data.names, targets, k)
    return before, after, measured
