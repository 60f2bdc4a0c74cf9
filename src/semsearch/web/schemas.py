"""The JSON the API takes and gives, as pydantic models, so /openapi.json describes every body;
and the one conversion of each library result into its response. The page (static/*.js) reads
these keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from semsearch.featureset import FeatureSet

if TYPE_CHECKING:  # the explorer's modules load what rendering needs; a type is enough here
    from semsearch.explore.channels import TopImage
    from semsearch.explore.maps import ShownMap
    from semsearch.explore.renders import Renderer, RenderJob
    from semsearch.explore.why import SeenBy, SimilarityMaps
    from semsearch.models.layers import LayerInfo
    from semsearch.query.collection import (
        Collection,
        CollectionFeatureSet,
        CollectionSummary,
    )
    from semsearch.query.hits import Hit, SearchResult
    from semsearch.store import ImageRecord, SweepRecord, SweepRow

MAX_K = 200  # results a search may ask for


def binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """Gives the `responses` of a route that answers bytes (an image), for /openapi.json."""
    return {200: {"content": {media_type: {}}, "description": description}}

# -- requests ---------------------------------------------------------------------------------


class UrlSearch(BaseModel):
    url: str = Field(..., max_length=4096, description="an http(s) URL of an image")
    feature_set: str | None = Field(None, max_length=1000)
    metric: str | None = Field(None, max_length=40)
    k: int = Field(15, ge=1, le=MAX_K)


class UrlWhy(BaseModel):
    url: str = Field(..., max_length=4096, description="the http(s) URL searched by")
    result: int = Field(description="the id of the indexed result image")
    feature_set: str = Field(..., max_length=1000)
    classifier: str | None = Field(None, max_length=200, description="a model whose "
                                   "classes of the query to include")


# -- collections and images -------------------------------------------------------------------


class CollectionOut(BaseModel):
    id: int
    name: str
    root: str
    images: int
    labels: dict[str, int] = Field(description="image count per class ('' for no class)")
    labeled: bool = Field(description="whether the images come in two classes or more")

    @classmethod
    def of(cls, summary: CollectionSummary) -> CollectionOut:
        c = summary.collection
        return cls(id=c.id, name=c.name, root=c.root, images=summary.images,
                   labels=summary.labels, labeled=summary.labeled)


class FeatureSetOut(BaseModel):
    depth: int = Field(description="the layer's position in its (first) model; -1 if unknown")
    name: str
    model: str
    layer: str
    pooling: str
    adapter: str | None
    dim: int
    vectors: int = Field(description="how many of the collection's images it has vectors for")
    feature_layer: str | None = Field(None, description="the layer its (first) model's "
                                      "classifier reads, where a model change lands when "
                                      "the chosen layer is not there")
    title: str = Field(description="the feature set in words, e.g. 'EfficientNet-Lite0, last "
                       "layer, GeM pooling'; `name` is the exact string")

    @classmethod
    def of(cls, item: CollectionFeatureSet, depth: int, feature_layer: str | None = None,
           title: str = "") -> FeatureSetOut:
        fs = item.record.feature_set
        return cls(depth=depth, name=item.record.name, model=fs.model, layer=fs.layer,
                   pooling=fs.pooling, adapter=fs.adapter or None, dim=item.record.dim,
                   vectors=item.vectors, feature_layer=feature_layer,
                   title=title or item.record.name)


class CollectionDetail(CollectionOut):
    default_feature_set: str | None
    feature_sets: list[FeatureSetOut]


class ImageOut(BaseModel):
    id: int
    label: str
    name: str
    width: int
    height: int

    @classmethod
    def of(cls, record: ImageRecord, label: str) -> ImageOut:
        return cls(id=record.id, label=label, name=Path(record.path).name, width=record.width,
                   height=record.height)


class ImageListing(BaseModel):
    total: int
    offset: int
    images: list[ImageOut]


# -- models and options -----------------------------------------------------------------------


class ModelOut(BaseModel):
    name: str
    params: int
    layers: int
    input_size: int
    default_layer: str
    description: str


class LayerOut(BaseModel):
    name: str
    type: str
    channels: int
    height: int
    width: int
    stride: int
    params: int
    shape: list[int]

    @classmethod
    def of(cls, layer: LayerInfo) -> LayerOut:
        return cls(name=layer.name, type=layer.type, channels=layer.channels,
                   height=layer.height, width=layer.width, stride=layer.stride,
                   params=layer.params, shape=list(layer.shape))


class Options(BaseModel):
    poolings: list[str]
    metrics: list[str]
    default_metric: str
    default_k: int
    max_k: int
    expand_k: int
    upload_max_bytes: int
    default_collection: int | None = Field(
        description="the collection the page opens on (the folder `semsearch serve` was "
        "given), null for the oldest")


# -- search -----------------------------------------------------------------------------------


class HitOut(BaseModel):
    rank: int
    id: int
    label: str = Field(description="the image's class in the collection ('' for none)")
    name: str
    distance: float
    similarity: float = Field(description="percent, as the page shows it")
    score: float
    same_class: bool | None = Field(description="null when the query has no class")

    @classmethod
    def of(cls, h: Hit) -> HitOut:
        return cls(rank=h.rank, id=h.image_id, label=h.label, name=Path(h.path).name,
                   distance=h.distance, similarity=round(h.similarity, 2), score=h.score,
                   same_class=h.same_class)


class SearchResponse(BaseModel):
    """The answer of every search: by id, upload, URL, words and focus."""

    query: str
    query_label: str | None = Field(None, description="the query image's class; absent for "
                                    "words")
    feature_set: str
    metric: str
    weighted_p15: float | None = Field(description="the query's score when it has a class")
    embed_ms: float
    search_ms: float
    hits: list[HitOut]
    title: str = Field(description="what ranked the hits in words (`feature_set` is the "
                       "exact string)")
    metric_title: str = Field(description="`metric` in words, e.g. 'cosine, with "
                              "database-side augmentation over 10 neighbours'")

    @classmethod
    def of(cls, result: SearchResult) -> SearchResponse:
        return cls(query=result.query, query_label=result.query_label,
                   feature_set=result.feature_set, metric=result.metric,
                   title=result.title or result.feature_set,
                   metric_title=result.metric_title or result.metric,
                   weighted_p15=result.weighted_p15, embed_ms=round(result.embed_ms, 2),
                   search_ms=round(result.search_ms, 2),
                   hits=[HitOut.of(h) for h in result.hits])


class TagOut(BaseModel):
    word: str
    score: float = Field(description="cosine similarity of the word and the image")
    confident: bool = Field(description="whether the score reaches the threshold below which "
                            "the page hides a tag unless asked")


# -- evaluations and maps ---------------------------------------------------------------------


class EvaluationOut(BaseModel):
    id: int
    created_at: float
    settings: dict[str, Any] = Field(description="what the run scored (models, layers, "
                                     "poolings, metrics, k, images, classes)")

    @classmethod
    def of(cls, run: SweepRecord) -> EvaluationOut:
        return cls(id=run.id, created_at=run.created_at, settings=json.loads(run.settings))


class Scores(BaseModel):
    weighted_p15: float
    precision_at_k: float
    recall_at_k: float
    map: float
    nn_accuracy: float
    queries: int


class EvaluationRow(BaseModel):
    feature_set: str
    model: str
    layer: str
    pooling: str
    metric: str
    scores: Scores
    image_score: float | None = Field(description="the chosen image's own score, if asked")

    @classmethod
    def of(cls, row: SweepRow, image_id: int | None) -> EvaluationRow:
        fs = FeatureSet.parse(row.feature_set)
        own = None
        if image_id is not None:
            where = (row.image_ids == image_id).nonzero()[0]
            own = float(row.per_query[where[0]]) if len(where) else None
        return cls(feature_set=row.feature_set, model=fs.model, layer=fs.layer,
                   pooling=fs.pooling, metric=row.metric,
                   scores=json.loads(row.scores)["overall"], image_score=own)


class EvaluationDetail(BaseModel):
    id: int
    root: str
    created_at: float
    settings: dict[str, Any]
    rows: list[EvaluationRow]

    @classmethod
    def of(cls, run: SweepRecord, rows: list[SweepRow], image_id: int | None
           ) -> EvaluationDetail:
        return cls(id=run.id, root=run.root, created_at=run.created_at,
                   settings=json.loads(run.settings),
                   rows=[EvaluationRow.of(row, image_id) for row in rows])


class MapOut(BaseModel):
    feature_set: str
    version: int
    ids: list[int]
    x: list[float] = Field(description="in [0, 1]")
    y: list[float] = Field(description="in [0, 1]")
    labels: list[str]

    @classmethod
    def of(cls, feature_set: str, shown: ShownMap) -> MapOut:
        made = shown.map
        return cls(feature_set=feature_set, version=made.version,
                   ids=[int(i) for i in made.image_ids],
                   x=[round(float(v), 5) for v in made.coords[:, 0]],
                   y=[round(float(v), 5) for v in made.coords[:, 1]], labels=shown.labels)


# -- model explorer ---------------------------------------------------------------------------


class TopImageOut(BaseModel):
    id: int
    label: str
    name: str
    activation: float

    @classmethod
    def of(cls, c: Collection, top: TopImage) -> TopImageOut:
        return cls(id=top.image.id, label=c.label(top.image.path) or "",
                   name=Path(top.image.path).name, activation=top.activation)


class RenderRequest(BaseModel):
    channels: list[int] = Field(min_length=1, max_length=256,
                                description="the layer's channels to render, in order")


class RenderJobOut(BaseModel):
    id: int
    model: str
    layer: str
    channels: list[int]
    rendered: list[int] = Field(description="channels whose pictures are ready: "
                                "GET /api/models/M/layers/L/channels/N/image?render=false")
    state: str = Field(description="queued, running, done, failed or cancelled")
    background: bool = Field(description="an idle pre-render, not asked for")
    done: int = Field(description="optimization steps done")
    total: int = Field(description="optimization steps in all")
    fraction: float
    elapsed_seconds: float
    eta_seconds: float | None = Field(description="seconds still needed; null until known")
    error: str

    @classmethod
    def of(cls, job: RenderJob, renderer: Renderer) -> RenderJobOut:
        return cls(id=job.id, model=job.model, layer=job.layer, channels=job.channels,
                   rendered=job.rendered, state=job.state, background=job.background,
                   done=job.steps_done, total=job.steps_total, fraction=job.fraction,
                   elapsed_seconds=job.elapsed, eta_seconds=job.eta(renderer.seconds_per_step(job)),
                   error=job.error)


class RenderQueueOut(BaseModel):
    jobs: list[RenderJobOut] = Field(description="the jobs still to finish, newest last")
    planned_layers: int = Field(description="layers the idle pre-render has still to look at")


class ClassGuessOut(BaseModel):
    index: int
    name: str
    probability: float


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


class WhyOut(BaseModel):
    feature_set: str
    models: list[str] = Field(description="the feature set's models, in order")
    layer: str
    pooling: str
    similarity: float = Field(description="cosine similarity of the two images' own pooled "
                              "vectors: what the heatmaps split (a search's ranking may "
                              "differ: DBA, focus, or another metric)")
    query_png: str = Field(description="data: URL of the query's heatmap")
    result_png: str = Field(description="data: URL of the result's heatmap")
    query_classes: list[ClassGuessOut] | None = Field(
        None, description="for a query the server does not keep (upload, URL), when a "
        "classifier was named: its top-5 classes")
    query_cam_png: str | None = Field(None, description="data: URL of where the classifier "
                                      "sees the query's top class (with query_classes)")

    @classmethod
    def of(cls, fs: FeatureSet, maps: SimilarityMaps, seen: SeenBy | None = None) -> WhyOut:
        classes = None if seen is None else [
            ClassGuessOut(index=g.index, name=g.name, probability=g.probability)
            for g in seen.classes]
        return cls(feature_set=str(fs), models=list(fs.models), layer=fs.layer,
                   pooling=fs.pooling, similarity=maps.similarity,
                   query_png=_png(maps.query_png), result_png=_png(maps.result_png),
                   query_classes=classes,
                   query_cam_png=None if seen is None else _png(seen.cam_png))
