"""`semsearch compare`: every model x layer x pooling x metric scored on a labeled folder
(class = folder name), ranked, and stored for the web app.

Each model runs once per image: all its requested layers come from one forward pass and
are pooled every requested way (`LayerSweep`). The vectors are kept in the catalogue like
any index's, so a second run on the same folder embeds only what changed."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from semsearch.embed.build import load
from semsearch.embed.extractors import LayerSweep
from semsearch.errors import EvaluationError
from semsearch.featureset import FeatureSet, check_pooling
from semsearch.images import folder_class, real_path, scan_images
from semsearch.index.metric import Metric
from semsearch.indexing.local import index_folder
from semsearch.indexing.plan import IndexReport, Progress
from semsearch.models.layers import AUTO, LayerInfo, choose_layers
from semsearch.query.context import Context
from semsearch.ranking import Scores, evaluate
from semsearch.store import FeatureSetRecord, SweepRecord, SweepRow

_SWEEP_BATCH = 8

# (stage, done, total): stage is "embedding MODEL" or "scoring".
SweepProgress = Callable[[str, int, int], None]


def _stage(progress: SweepProgress | None, stage: str) -> Progress | None:
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(stage, done, total)


@dataclass(frozen=True)
class ConfigScore:
    """One configuration's means over all queries, and per query class."""

    model: str
    layer: str
    pooling: str
    metric: str
    depth: int  # the layer's position among the model's layers (0 = first)
    overall: Scores
    per_class: dict[str, Scores]

    @property
    def feature_set(self) -> FeatureSet:
        return FeatureSet(self.model, self.layer, self.pooling)


@dataclass(frozen=True)
class SweepResult:
    sweep: SweepRecord
    root: str
    images: int
    classes: int
    k: int
    layers: dict[str, list[str]]  # per model, in network order
    rows: list[ConfigScore]  # best first, by weighted precision at 15, then mAP
    reports: list[IndexReport]
    unlabeled: int  # images directly in the folder, in no class, left out
    seconds: float


def labeled_files(root: str) -> tuple[str, dict[str, str]]:
    """Gives the folder's real path and, for each image file in a class sub-folder, its
    class; raises EvaluationError unless the folder has two classes or more."""
    root_path = real_path(root)
    if not os.path.exists(root_path):
        raise EvaluationError(f"{root_path}: no such file or folder")
    if not os.path.isdir(root_path):
        raise EvaluationError(f"{root_path} is not a folder; give a folder with one "
                              "sub-folder of images per class")
    scan = scan_images(root_path)
    labels = {f.path: label for f in scan.files
              if (label := folder_class(root_path, f.path)) is not None}
    classes = len(set(labels.values()))
    if classes < 2:
        raise EvaluationError(
            f"{root_path} has image files in {classes} class folder(s); at least two are "
            "needed (one sub-folder of images per class)")
    return root_path, labels


def run_sweep(
    session: Context,
    root: str,
    *,
    models: Sequence[str],
    layers: Sequence[str] = (AUTO,),
    poolings: Sequence[str] = ("avg", "gem"),
    metrics: Sequence[str] = ("cosine",),
    k: int = 10,
    progress: SweepProgress | None = None,
) -> SweepResult:
    """Embeds a labeled folder with every model (all layers in one pass per image, cached in
    the catalogue), scores every model x layer x pooling x metric on the images that every
    configuration has a vector for, stores and gives the ranked results."""
    started = time.perf_counter()
    pools, chosen_metrics = _check_request(session, models, poolings, metrics, k)
    root_path, labels_by_path = labeled_files(root)
    plans = _plans(session, models, layers)
    reports = [_embed(session, plan, pools, root_path, progress) for plan in plans]
    jobs = [_Job(plan.model, plan.table, name, p) for plan in plans
            for name in plan.layers for p in pools]
    records = {job.feature_set: session.store.feature_set(
        job.feature_set, session.models.input_key(job.feature_set)) for job in jobs}
    images = session.store.images_under(root_path)
    labels_by_id = {r.id: labels_by_path[r.path] for r in images.values()
                    if r.path in labels_by_path}
    wanted, classes = _common_images(session, list(records.values()), labels_by_id, root_path)
    rows: list[ConfigScore] = []
    stored: list[SweepRow] = []
    total = len(jobs) * len(chosen_metrics)
    for job in jobs:
        for row, saved_row in _score(session, job, records[job.feature_set], root_path,
                                     wanted, labels_by_id, chosen_metrics, k):
            rows.append(row)
            stored.append(saved_row)
            if progress:
                progress("scoring", len(rows), total)

    rows.sort(key=lambda r: (-r.overall.weighted_p15, -r.overall.map, r.model, r.depth,
                             r.pooling, r.metric))
    layer_names = {plan.model: plan.layers for plan in plans}
    unlabeled = sum(1 for r in images.values() if r.path not in labels_by_path)
    settings = {"models": list(layer_names), "layers": layer_names, "poolings": pools,
                "metrics": [str(m) for m in chosen_metrics], "k": k,
                "images": len(wanted), "classes": classes}
    saved = session.store.save_sweep(root_path, json.dumps(settings), stored)
    return SweepResult(saved, root_path, len(wanted), classes, k, layer_names, rows, reports,
                       unlabeled, time.perf_counter() - started)


def _check_request(session: Context, models: Sequence[str], poolings: Sequence[str],
                   metrics: Sequence[str], k: int) -> tuple[list[str], list[Metric]]:
    """Gives the distinct poolings and metrics asked for; raises before any work if the
    request cannot be swept."""
    if not models:
        raise EvaluationError("name at least one model")
    if any("+" in model for model in models):
        raise EvaluationError("compare scores single models; name composite models "
                              "(a+b) to `index` instead")
    pools = list(dict.fromkeys(check_pooling(p) for p in poolings))
    chosen_metrics = list(dict.fromkeys(session.metric(name) for name in metrics))
    if not pools or not chosen_metrics:
        raise EvaluationError("name at least one pooling and one metric")
    if k < 1:
        raise EvaluationError(f"k must be at least 1, not {k}")
    return pools, chosen_metrics


class _Plan(NamedTuple):
    model: str
    table: list[LayerInfo]  # all the model's layers, in network order
    layers: list[str]  # the ones swept


class _Job(NamedTuple):
    model: str
    table: list[LayerInfo]
    layer: str
    pooling: str

    @property
    def feature_set(self) -> FeatureSet:
        return FeatureSet(self.model, self.layer, self.pooling)


def _plans(session: Context, models: Sequence[str], layers: Sequence[str]) -> list[_Plan]:
    """Gives each distinct model with its layer table and the layers to sweep."""
    plans = []
    for model in dict.fromkeys(models):
        spec = session.models.spec(model)  # an unknown model fails here, before any work
        table = session.models.layer_table(model)
        plans.append(_Plan(model, table, choose_layers(table, layers, model,
                                                       spec.default_layer)))
    return plans


def _embed(session: Context, plan: _Plan, pools: list[str], root_path: str,
           progress: SweepProgress | None) -> IndexReport:
    """Indexes the folder with every swept layer and pooling of one model, in one forward
    pass per image; gives the run's report."""
    config = session.config
    spec = session.models.spec(plan.model)
    backbone = load(spec, plan.layers, session.models.settings)
    sweep = LayerSweep(spec, [FeatureSet(plan.model, name, p) for name in plan.layers
                              for p in pools],
                       backbone, flat_max_dims=config.flat_max_dims,
                       max_pixels=config.max_pixels)
    # Early layers' maps are large and all of them are held per batch: keep it small.
    return index_folder(
        session.store, sweep, root_path, batch_size=min(config.batch_size, _SWEEP_BATCH),
        workers=config.workers, progress=_stage(progress, f"embedding {plan.model}"))


def _common_images(session: Context, records: list[FeatureSetRecord],
                   labels_by_id: dict[int, str], root_path: str
                   ) -> tuple[npt.NDArray[np.int64], int]:
    """Gives the labeled images every configuration has a vector for (so all are scored on
    the same images), sorted, and how many classes they span."""
    common = set(labels_by_id)
    for record in records:
        common &= session.store.image_ids_with_vectors(record.id)
    classes = len({labels_by_id[i] for i in common})
    if len(common) < 2 or classes < 2:
        raise EvaluationError(
            f"only {len(common)} image(s) in {classes} class(es) of {root_path} could be "
            "embedded; comparing needs images in at least two classes")
    return np.array(sorted(common), dtype=np.int64), classes


def _score(session: Context, job: _Job, record: FeatureSetRecord, root_path: str,
           wanted: npt.NDArray[np.int64], labels_by_id: dict[int, str],
           metrics: list[Metric], k: int) -> Iterator[tuple[ConfigScore, SweepRow]]:
    """Yields one configuration's scores under each metric, as shown and as stored."""
    ids, vectors = session.store.vectors_under(record.id, root_path)
    keep = np.isin(ids, wanted)
    ids, vectors = ids[keep], vectors[keep]
    labels = [labels_by_id[int(i)] for i in ids]
    depth = next(i for i, layer in enumerate(job.table) if layer.name == job.layer)
    for metric in metrics:
        result = evaluate(vectors, labels, metric, k)
        scores = {"overall": asdict(result.overall),
                  "per_class": {c: asdict(s) for c, s in result.per_class.items()}}
        yield (ConfigScore(job.model, job.layer, job.pooling, str(metric), depth,
                           result.overall, result.per_class),
               SweepRow(str(job.feature_set), record.preprocessing, str(metric),
                        json.dumps(scores), ids, result.weighted_p15.astype(np.float32)))
