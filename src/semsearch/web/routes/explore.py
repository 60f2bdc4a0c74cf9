"""The model explorer: what a channel responds to (an optimized image, the collection's images
that excite it most, where it fires in one image), what a classifier sees in an image, and
why two images match."""

from __future__ import annotations

import threading
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from semsearch.errors import QueryError, SemsearchError
from semsearch.explore.renders import Renderer, catalogue_models, prerender_plan
from semsearch.featureset import FeatureSet
from semsearch.web.deps import CollectionOf, ImageFile, Web, WebState
from semsearch.web.schemas import (
    ClassGuessOut,
    RenderJobOut,
    RenderQueueOut,
    RenderRequest,
    TopImageOut,
    UrlWhy,
    WhyOut,
    binary,
)
from semsearch.web.security import check_query_size, same_site, with_file

router = APIRouter(dependencies=[Depends(same_site)])  # all of it is costly work

PNG = binary("image/png", "a PNG")

_renderers = threading.Lock()


def renderer_of(app: FastAPI) -> Renderer:
    """Gives the app's channel renderer (made on first use; its thread runs only while
    there is work)."""
    with _renderers:
        if getattr(app.state, "renderer", None) is None:
            state: WebState = app.state.web
            app.state.renderer = Renderer(state.session)
        renderer: Renderer = app.state.renderer
        return renderer


def _renderer(request: Request) -> Renderer:
    return renderer_of(request.app)


Renders = Annotated[Renderer, Depends(_renderer)]


def prerender(app: FastAPI, models: list[str] | None = None) -> None:
    """Starts pre-rendering the explorer's tiles, each model's feature layer then the
    sweep's layers (by default for the catalogue's models that have torch weights), while
    the server is idle: any request but a render job's stops it until the server has been
    idle again for a few seconds."""
    state: WebState = app.state.web
    renderer = renderer_of(app)
    app.add_middleware(_Requests, renderer=renderer)
    names = models if models is not None else catalogue_models(state.session)
    if names:
        renderer.prerender(partial(prerender_plan, state.session, names))


class _Requests:
    """ASGI middleware telling the renderer of each request, but those that follow render
    jobs (the page asks for their progress every second)."""

    def __init__(self, app: Any, renderer: Renderer) -> None:
        self.app, self.renderer = app, renderer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not str(scope["path"]).startswith("/api/renders"):
            self.renderer.touch()
        await self.app(scope, receive, send)


@router.post("/api/models/{name}/layers/{layer}/renders",
             summary="Render some of a layer's channels into the cache as one batched job "
             "(the newest job first); follow it at /api/renders/{id}")
def render_channels(name: str, layer: str, body: RenderRequest, web: Web,
                    renders: Renders) -> RenderJobOut:
    job = renders.submit(web.served_model(name), layer, body.channels)
    return RenderJobOut.of(job, renders)


@router.get("/api/renders", summary="The channel render jobs still to finish, and what the "
            "idle pre-render has left")
def render_queue(renders: Renders) -> RenderQueueOut:
    return RenderQueueOut(jobs=[RenderJobOut.of(j, renders) for j in renders.jobs()
                                if j.active], planned_layers=renders.planned)


@router.get("/api/renders/{job_id}", summary="A channel render job's progress")
def render_job(job_id: int, renders: Renders) -> RenderJobOut:
    job = renders.job(job_id)
    if job is None:
        raise HTTPException(404, f"there is no render job {job_id} (finished ones are "
                            "forgotten after a while)")
    return RenderJobOut.of(job, renders)


@router.delete("/api/renders/{job_id}", summary="Stop a channel render job (the channels "
               "done so far stay cached)")
def cancel_render(job_id: int, renders: Renders) -> RenderJobOut:
    job = renders.cancel(job_id)
    if job is None:
        raise HTTPException(404, f"there is no render job {job_id}")
    return RenderJobOut.of(job, renders)


@router.get("/api/models/{name}/layers/{layer}/channels/{channel}/image",
            summary="An image optimized to excite the channel (rendered once with the "
            "default settings, then cached; 503 while another render runs)",
            response_class=Response, responses=PNG)
def channel_picture(name: str, layer: str, channel: int, web: Web,
                    render: bool = True) -> Response:
    from semsearch.explore.channels import channel_image

    made = channel_image(web.session, web.served_model(name), layer, channel, render=render,
                         wait=False)
    return Response(made.path.read_bytes(), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400",
                             "X-Render-Cached": "yes" if made.cached else "no",
                             "X-Render-CPU-Seconds": f"{made.cpu_seconds:.2f}",
                             "X-Channel-Activation": f"{made.activation:.4g}"})


@router.get("/api/collections/{cid}/top", summary="The collection's images that excite a "
            "channel most")
def top(c: CollectionOf, web: Web, model: str, layer: str, channel: int,
        k: int = Query(9, ge=1, le=100)) -> list[TopImageOut]:
    from semsearch.explore.channels import top_activating

    return [TopImageOut.of(c, t) for t in top_activating(web.session, c,
                                                         web.served_model(model), layer,
                                                         channel, k)]


@router.get("/api/images/{image_id}/activation", summary="Where a channel fires in an image",
            response_class=Response, responses=PNG)
def activation(record: ImageFile, web: Web, model: str, layer: str, channel: int) -> Response:
    from semsearch.explore.channels import activation_overlay

    return Response(activation_overlay(web.session, record.path, web.served_model(model),
                                       layer, channel), media_type="image/png")


@router.get("/api/images/{image_id}/classes", summary="The model's top-5 ImageNet classes")
def classes(record: ImageFile, web: Web, model: str = "lite0") -> list[ClassGuessOut]:
    from semsearch.explore.why import top_classes

    return [ClassGuessOut(index=g.index, name=g.name, probability=g.probability)
            for g in top_classes(web.session, web.served_model(model), record.path)]


@router.get("/api/images/{image_id}/cam", summary="A class's activation map over the image",
            response_class=Response, responses=PNG)
def cam(record: ImageFile, web: Web, class_index: int, model: str = "lite0") -> Response:
    from semsearch.explore.why import class_map

    return Response(class_map(web.session, web.served_model(model), record.path, class_index),
                    media_type="image/png")


@router.get("/api/why", summary="Why two indexed images match: the similarity and, per "
            "image, a heatmap of where it comes from (PNG, base64)")
def why(web: Web, query: int, result: int,
        feature_set: str = Query(..., max_length=1000)) -> WhyOut:
    from semsearch.explore.why import similarity_maps

    fs = FeatureSet.parse(feature_set).base
    web.served_model(fs.model)
    a, b = with_file(web.session.store, query), with_file(web.session.store, result)
    return WhyOut.of(fs, similarity_maps(web.session, fs, a.path, b.path))


@router.post("/api/why/upload", summary="Why an uploaded image matches an indexed result "
             "(the request body is the image file, as for a search by upload)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/*": {"schema": {"type": "string", "format": "binary"}}}}})
async def why_upload(request: Request, web: Web, result: int,
                     feature_set: str = Query(..., max_length=1000),
                     classifier: str | None = Query(None, max_length=200)) -> WhyOut:
    data = await request.body()  # capped by security.BodyLimit
    if not data:
        raise QueryError("the upload is empty; send the image file as the request body")
    return await run_in_threadpool(_why_outside, web, data, result, feature_set, classifier)


@router.post("/api/why/url", summary="Why the image at a URL matches an indexed result "
             "(fetched again, as for a search by URL)")
def why_url(web: Web, body: UrlWhy) -> WhyOut:
    _served(web, body.feature_set, body.classifier)  # refused before anything is fetched
    return _why_outside(web, web.fetch(body.url), body.result, body.feature_set,
                        body.classifier)


def _served(web: WebState, feature_set: str, classifier: str | None) -> FeatureSet:
    """Gives the base feature set once it and the classifier may be loaded."""
    fs = FeatureSet.parse(feature_set).base
    web.served_model(fs.model)
    if classifier:
        web.served_model(classifier)
    return fs


def _why_outside(web: WebState, data: bytes, result: int, feature_set: str,
                 classifier: str | None) -> WhyOut:
    """Gives why a query the server does not keep matches an indexed image, with what the
    classifier sees in the query; a few decoded at once, once their size is safe."""
    from semsearch.explore.why import seen_by, similarity_maps

    fs = _served(web, feature_set, classifier)
    record = with_file(web.session.store, result)
    check_query_size(data)
    with web.decoding:
        maps = similarity_maps(web.session, fs, data, record.path)
        seen = None
        if classifier:
            try:
                seen = seen_by(web.session, classifier, data)
            except SemsearchError:  # no classifier: the classes are extras, the maps are not
                pass
    return WhyOut.of(fs, maps, seen)
