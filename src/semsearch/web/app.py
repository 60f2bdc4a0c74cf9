"""The JSON API and the static page of ConvNet Playground. Routes are thin: they parse, call
one library function, and turn domain errors into a 4xx with a message a person can act on.
Images are only ever served by id, never by a path the client gives."""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from semsearch.config import Config
from semsearch.errors import (
    BadImageError,
    ConfigError,
    EvaluationError,
    FeatureSetError,
    NotIndexedError,
    QueryError,
    SemsearchError,
    StoreError,
    UnknownLayerError,
    UnknownMetricError,
    UnknownModelError,
)
from semsearch.explore.channels import RenderBusy
from semsearch.featureset import POOLINGS, FeatureSet
from semsearch.images import real_path
from semsearch.index.metric import METRICS, Metric
from semsearch.models.onnx_file import onnx_input
from semsearch.models.registry import ModelRegistry
from semsearch.query.collection import (
    Collection,
    CollectionSummary,
    collection_feature_sets,
    collection_images,
    default_feature_set,
    get_collection,
    list_collections,
    resolve_feature_set,
    search_collection,
    summarize,
)
from semsearch.query.hits import SearchResult, relabeled
from semsearch.query.service import ImageQuery, KnownImageQuery
from semsearch.session import Session
from semsearch.store import ImageRecord
from semsearch.web.fetch import FetchError, FetchPolicy, fetch

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
UPLOAD_MAX_BYTES = 20 * 1024 * 1024
BODY_MAX_BYTES = 64 * 1024  # any other request body (a URL search's JSON)
MAX_K = 200
TOKEN_COOKIE = "semsearch_token"

_STATUS: list[tuple[type[Exception], int]] = [
    (NotIndexedError, 404),
    (UnknownModelError, 404),
    (UnknownLayerError, 404),
    (FetchError, 422),
    (BadImageError, 415),
    (FeatureSetError, 422),
    (UnknownMetricError, 422),
    (EvaluationError, 422),
    (QueryError, 422),
    (ConfigError, 422),
    (StoreError, 503),
]


def status_for(exc: Exception) -> int:
    """Gives the HTTP status of a domain error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


class UrlSearch(BaseModel):
    url: str = Field(..., max_length=4096, description="an http(s) URL of an image")
    feature_set: str | None = Field(None, max_length=1000)
    metric: str | None = Field(None, max_length=40)
    k: int = Field(15, ge=1, le=MAX_K)


def create_app(config: Config, *, registry: ModelRegistry | None = None,
               session: Session | None = None, fetch_policy: FetchPolicy | None = None,
               upload_max_bytes: int = UPLOAD_MAX_BYTES,
               allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> FastAPI:
    """Gives the FastAPI application serving the catalogue of `config` (or `session`).
    Without a token (config.token), requests must name one of `allowed_hosts` (a web page
    cannot reach the server by pointing its own name at 127.0.0.1); with one, any host name
    is accepted and every request but the static files must carry the token. A POST from
    another site's page is refused, and request bodies are capped."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    sess = session or Session(config, registry=registry, create=True)
    policy = fetch_policy or FetchPolicy()
    models_lock = threading.Lock()
    models_cache: list[Any] = []
    # Query images are decoded a few at a time: a small file can hold a large image.
    decoding = threading.BoundedSemaphore(2)
    # A URL search can wait on a slow server for its whole deadline; a few at once at most,
    # so they cannot take every worker thread.
    fetching = threading.BoundedSemaphore(4)
    token = config.token

    # The API description stays at /openapi.json; the /docs and /redoc pages would load
    # scripts from a CDN into this origin.
    app = FastAPI(title="semsearch: ConvNet Playground",
                  description="Semantic image search with convolutional networks.",
                  version="1", docs_url=None, redoc_url=None)
    app.state.session = sess
    # One cap on every request body: an upload's own, else a small one.
    app.add_middleware(_BodyLimit, limit_for=lambda path: (
        upload_max_bytes if path.endswith("/search/upload") else BODY_MAX_BYTES))
    if not token:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if token and not request.url.path.startswith("/static/"):
            # Any value the request carries may be the one: a cookie left by an earlier
            # server must not hide a fresh ?token= in the address.
            if not any(hmac.compare_digest(given.encode(), token.encode())
                       for given in _tokens_of(request)):
                needs = ("this server needs its token: open the address `semsearch serve` "
                         "printed (it ends in ?token=...), or send Authorization: Bearer <token>")
                if request.url.path == "/":  # a person at a browser: a page, not JSON
                    return Response(_NEEDS_TOKEN, status_code=401, media_type="text/html",
                                    headers={"WWW-Authenticate": "Bearer",
                                             "Content-Security-Policy": _CSP})
                return JSONResponse({"detail": needs}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            if request.url.path == "/" and "token" in request.query_params:
                # Trade the token in the address for a cookie, and drop it from the address.
                # A page, not a redirect: a link followed from another site would carry the
                # redirect's request as cross-site, without the SameSite=Strict cookie.
                opened = Response(_SIGNED_IN, media_type="text/html",
                                  headers={"Content-Security-Policy": _CSP,
                                           "Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer"})
                opened.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict",
                                  path="/")
                return opened
        if request.method not in ("GET", "HEAD", "OPTIONS") and _cross_site(request):
            return JSONResponse({"detail": "refusing a request sent by another site's page"},
                                status_code=403)
        return await call_next(request)

    def served_model(name: str) -> str:
        """Gives name if the web API may load it: a registered model, or a model that made
        a stored feature set or is configured. Never a file named by the client."""
        known = set(sess.registry.names()) | set(config.model.split("+"))
        known |= {part for record in sess.store.feature_sets()
                  for part in record.feature_set.model.split("+")}
        if any(part not in known for part in name.split("+")):
            raise UnknownModelError(
                f"unknown model {name[:80]!r}; the web API offers the registered models "
                f"({', '.join(sess.registry.names())}) and those of the catalogue")
        return name

    def with_file(image_id: int) -> ImageRecord:
        """Gives an image's record if its file is still where it was indexed: there, and
        not swapped for a link (or a folder on its path for one), which could point anywhere
        on this machine."""
        record = sess.store.image(image_id)
        if real_path(record.path) != record.path or not os.path.isfile(record.path):
            raise NotIndexedError(f"image {image_id}'s file is gone or was replaced by a "
                                  "link; index its folder again")
        return record

    def served_feature_set(name: str | None) -> str | None:
        """Gives the feature set name if its model may be loaded (see served_model)."""
        if name:
            served_model(FeatureSet.parse(name).base.model)
        return name

    def search_bytes(c: Collection, data: bytes, **options: Any) -> SearchResult:
        check_query_size(data)
        with decoding:
            return search_collection(sess, c, ImageQuery(data=data), **options)

    @app.exception_handler(SemsearchError)
    async def domain_error(_request: Request, exc: SemsearchError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(RenderBusy)
    async def busy(_request: Request, exc: RenderBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "3"})

    @app.exception_handler(OverflowError)
    async def out_of_range(_request: Request, _exc: OverflowError) -> JSONResponse:
        # An id beyond 64 bits reaches the catalogue as a number it cannot hold.
        return JSONResponse({"detail": "a number in the request is out of range"},
                            status_code=422)

    @app.exception_handler(ValueError)
    async def value_error(_request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def collection(cid: int) -> Collection:
        return get_collection(sess.store, cid)

    depths: dict[str, dict[str, int]] = {}

    def layer_depth(model: str, layer: str) -> int:
        """Gives the layer's position in the model (selects list layers by depth)."""
        from semsearch.models.summary import layers as table

        with models_lock:
            if model not in depths:
                try:
                    depths[model] = {info.name: i for i, info in enumerate(
                        table(sess.registry, model, onnx_input(config)))}
                except SemsearchError:
                    depths[model] = {}
            return depths[model].get(layer, -1)

    # -- catalogue ----------------------------------------------------------------------------

    @app.get("/api/collections", summary="Indexed folders, with image counts and labels")
    def collections() -> list[dict[str, Any]]:
        return [_collection_json(summarize(sess.store, c)) for c in list_collections(sess.store)]

    @app.get("/api/collections/{cid}", summary="One collection and its feature sets",
             dependencies=[Depends(same_site)])
    def one_collection(cid: int) -> dict[str, Any]:
        c = collection(cid)
        sets = collection_feature_sets(sess.store, c)
        default = default_feature_set(sess, c).name if sets else None
        return {**_collection_json(summarize(sess.store, c)), "default_feature_set": default,
                "feature_sets": [{
                    "depth": layer_depth(item.record.feature_set.model.split("+")[0],
                                         item.record.feature_set.layer),
                    "name": item.record.name, "model": item.record.feature_set.model,
                    "layer": item.record.feature_set.layer,
                    "pooling": item.record.feature_set.pooling,
                    "adapter": item.record.feature_set.adapter or None,
                    "dim": item.record.dim, "vectors": item.vectors} for item in sets]}

    @app.get("/api/collections/{cid}/images", summary="A collection's images, by class")
    def images(cid: int, offset: int = Query(0, ge=0),
               limit: int = Query(1000, ge=1, le=20000)) -> dict[str, Any]:
        c = collection(cid)
        records = collection_images(sess.store, c)
        return {"total": len(records), "offset": offset, "images": [
            {"id": r.id, "label": c.label(r.path) or "", "name": Path(r.path).name,
             "width": r.width, "height": r.height} for r in records[offset:offset + limit]]}

    @app.get("/api/images/{image_id}", summary="One image's record")
    def image(image_id: int) -> dict[str, Any]:
        r = sess.store.image(image_id)
        return {"id": r.id, "label": r.label, "name": Path(r.path).name, "width": r.width,
                "height": r.height}

    @app.get("/api/images/{image_id}/thumbnail", summary="A JPEG preview, by image id",
             response_class=Response)
    def thumbnail(image_id: int, size: int = Query(160)) -> Response:
        from semsearch.thumbnails import thumbnail as make

        data = make(with_file(image_id), size, sess.cache_dir, config.max_pixels)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/{image_id}/file", summary="The full image, by image id")
    def full_image(image_id: int) -> Response:
        record = with_file(image_id)
        media = _browser_type(record.path)
        if media is None:  # a format browsers cannot show (TIFF): send it as PNG
            from semsearch.images import open_image

            buffer = io.BytesIO()
            open_image(record.path, max_pixels=config.max_pixels).image.save(buffer, "PNG")
            return Response(buffer.getvalue(), media_type="image/png")
        return FileResponse(record.path, media_type=media,
                            headers={"X-Content-Type-Options": "nosniff"})

    # -- models and options -------------------------------------------------------------------

    @app.get("/api/models", summary="Available models, smallest first")
    def models() -> list[dict[str, Any]]:
        from semsearch.models.summary import summarize

        with models_lock:
            if not models_cache:
                models_cache.extend(asdict(row) for row in summarize(sess.registry))
        return models_cache

    @app.get("/api/models/{name}/layers", summary="A model's layers in execution order",
             dependencies=[Depends(same_site)])
    def layers(name: str) -> list[dict[str, Any]]:
        from semsearch.models.summary import layers as table

        return [{**asdict(layer), "shape": list(layer.shape)}
                for layer in table(sess.registry, served_model(name), onnx_input(config))]

    @app.get("/api/options", summary="Poolings, metrics and the defaults")
    def options() -> dict[str, Any]:
        return {"poolings": list(POOLINGS), "metrics": list(METRICS),
                "default_metric": config.metric, "default_k": 15, "max_k": MAX_K,
                "expand_k": config.expand_k, "upload_max_bytes": upload_max_bytes}

    # -- search -------------------------------------------------------------------------------

    @app.get("/api/collections/{cid}/search", summary="Search by an indexed image's id",
             dependencies=[Depends(same_site)])
    def search_by_id(cid: int, image_id: int, feature_set: str | None = None,
                     metric: str | None = None, k: int = Query(15, ge=1, le=MAX_K),
                     focus: str | None = Query(None, max_length=300)) -> dict[str, Any]:
        c = collection(cid)
        served_feature_set(feature_set)
        if focus:
            return _focused_json(sess, c, image_id, feature_set, focus, k)
        return _search_json(search_collection(sess, c, KnownImageQuery(image_id),
                                              feature_set=feature_set, metric=metric, k=k))

    @app.post("/api/collections/{cid}/search/upload",
              summary="Search by an uploaded image (the request body is the image file)")
    async def search_by_upload(cid: int, request: Request, feature_set: str | None = None,
                               metric: str | None = None,
                               k: int = Query(15, ge=1, le=MAX_K)) -> JSONResponse:
        data = await request.body()  # capped by _BodyLimit
        if not data:
            raise QueryError("the upload is empty; send the image file as the request body")
        c = await run_in_threadpool(collection, cid)
        await run_in_threadpool(served_feature_set, feature_set)
        result = await run_in_threadpool(search_bytes, c, data, feature_set=feature_set,
                                         metric=metric, k=k)
        return JSONResponse(_search_json(result))

    @app.post("/api/collections/{cid}/search/url", summary="Search by an image URL",
              response_model=None)
    def search_by_url(cid: int, body: UrlSearch) -> dict[str, Any] | JSONResponse:
        c = collection(cid)
        served_feature_set(body.feature_set)
        if body.metric:
            Metric(body.metric)  # a bad one is refused before anything is fetched
        if not fetching.acquire(blocking=False):
            return JSONResponse({"detail": "too many URL searches at once; try again"},
                                status_code=503, headers={"Retry-After": "2"})
        try:
            data = fetch(body.url, policy)
        finally:
            fetching.release()
        return _search_json(search_bytes(c, data, feature_set=body.feature_set,
                                         metric=body.metric, k=body.k))

    @app.get("/api/collections/{cid}/search/text", summary="Search by words (zero-shot, "
             "through the classifier's class names)", dependencies=[Depends(same_site)])
    def search_by_text(cid: int, q: str = Query(..., max_length=1000),
                       k: int = Query(15, ge=1, le=MAX_K)) -> dict[str, Any]:
        from semsearch.query.text_model import check_query
        from semsearch.query.words import index_text, search_text

        check_query(q)
        c = collection(cid)
        index_text(sess, c.root, max_age=60)  # class probabilities of new images only
        result = relabeled(search_text(sess, q, k=k, root=c.root), c.label, None)
        return _search_json(replace(result, feature_set=f"{result.feature_set} (words)"))

    @app.get("/api/images/{image_id}/tags", summary="Words that describe an image",
             dependencies=[Depends(same_site)])
    def tags(image_id: int, k: int = Query(5, ge=1, le=50)) -> list[dict[str, Any]]:
        from semsearch.query.words import image_tags, index_text

        sess.store.image(image_id)  # a 404 for an unknown id
        try:
            return [asdict(tag) for tag in image_tags(sess, image_id, k)]
        except NotIndexedError:
            index_text(sess, with_file(image_id).path)  # this image's class probabilities, once
            return [asdict(tag) for tag in image_tags(sess, image_id, k)]

    # -- evaluations and maps -----------------------------------------------------------------

    @app.get("/api/collections/{cid}/evaluations", summary="Comparison runs of a collection")
    def evaluations(cid: int) -> list[dict[str, Any]]:
        c = collection(cid)
        return [{"id": s.id, "created_at": s.created_at, "settings": json.loads(s.settings)}
                for s in sess.store.sweeps(c.root)]

    @app.get("/api/evaluations/{sweep_id}", summary="A comparison run's scores; with "
             "image_id, that image's own score per configuration too")
    def evaluation(sweep_id: int, image_id: int | None = None) -> dict[str, Any]:
        runs = {s.id: s for s in sess.store.sweeps()}
        rows = sess.store.sweep_rows(sweep_id)
        run = runs[sweep_id]
        out = []
        for row in rows:
            fs_model, _, rest = row.feature_set.partition("@")
            layer, _, pooling = rest.rpartition("/")
            own = None
            if image_id is not None:
                where = (row.image_ids == image_id).nonzero()[0]
                own = float(row.per_query[where[0]]) if len(where) else None
            out.append({"feature_set": row.feature_set, "model": fs_model, "layer": layer,
                        "pooling": pooling, "metric": row.metric,
                        "scores": json.loads(row.scores)["overall"], "image_score": own})
        return {"id": run.id, "root": run.root, "created_at": run.created_at,
                "settings": json.loads(run.settings), "rows": out}

    @app.get("/api/collections/{cid}/map", summary="2-D map (UMAP) of a collection for a "
             "feature set, computed once and cached", dependencies=[Depends(same_site)])
    def collection_map(cid: int, feature_set: str | None = None) -> dict[str, Any]:
        from semsearch.explore.maps import collection_map as make

        c = collection(cid)
        record = resolve_feature_set(sess, c, served_feature_set(feature_set))
        made = make(sess.store, record, c.root)
        records = sess.store.images(made.image_ids)
        # Images whose files are gone are left off (the map keeps their place).
        shown = [i for i, image_id in enumerate(made.image_ids.tolist())
                 if image_id in records and os.path.isfile(records[image_id].path)]
        return {"feature_set": record.name, "version": made.version,
                "ids": [int(made.image_ids[i]) for i in shown],
                "x": [round(float(made.coords[i, 0]), 5) for i in shown],
                "y": [round(float(made.coords[i, 1]), 5) for i in shown],
                "labels": [c.label(records[int(made.image_ids[i])].path) or "" for i in shown]}

    # -- model explorer -----------------------------------------------------------------------

    @app.get("/api/models/{name}/layers/{layer}/channels/{channel}/image",
             summary="An image optimized to excite the channel (rendered once with the "
             "default settings, then cached; 503 while another render runs)",
             response_class=Response, dependencies=[Depends(same_site)])
    def channel_picture(name: str, layer: str, channel: int, render: bool = True) -> Response:
        from semsearch.explore.channels import channel_image

        made = channel_image(sess, served_model(name), layer, channel, render=render,
                             wait=False)
        return Response(made.path.read_bytes(), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400",
                                 "X-Render-Cached": "yes" if made.cached else "no",
                                 "X-Render-CPU-Seconds": f"{made.cpu_seconds:.2f}",
                                 "X-Channel-Activation": f"{made.activation:.4g}"})

    @app.get("/api/collections/{cid}/top", summary="The collection's images that excite a "
             "channel most", dependencies=[Depends(same_site)])
    def top(cid: int, model: str, layer: str, channel: int,
            k: int = Query(9, ge=1, le=100)) -> list[dict[str, Any]]:
        from semsearch.explore.channels import top_activating

        c = collection(cid)
        return [{"id": t.image.id, "label": c.label(t.image.path) or "",
                 "name": Path(t.image.path).name, "activation": t.activation}
                for t in top_activating(sess, c, served_model(model), layer, channel, k)]

    @app.get("/api/images/{image_id}/activation", summary="Where a channel fires in an image",
             response_class=Response, dependencies=[Depends(same_site)])
    def activation(image_id: int, model: str, layer: str, channel: int) -> Response:
        from semsearch.explore.channels import activation_overlay

        record = with_file(image_id)
        return Response(activation_overlay(sess, record.path, served_model(model), layer,
                                           channel),
                        media_type="image/png")

    @app.get("/api/images/{image_id}/classes", summary="The model's top-5 ImageNet classes",
             dependencies=[Depends(same_site)])
    def classes(image_id: int, model: str = "lite0") -> list[dict[str, Any]]:
        from semsearch.explore.why import top_classes

        record = with_file(image_id)
        return [asdict(guess) for guess in top_classes(sess, served_model(model), record.path)]

    @app.get("/api/images/{image_id}/cam", summary="A class's activation map over the image",
             response_class=Response, dependencies=[Depends(same_site)])
    def cam(image_id: int, class_index: int, model: str = "lite0") -> Response:
        from semsearch.explore.why import class_map

        record = with_file(image_id)
        return Response(class_map(sess, served_model(model), record.path, class_index),
                        media_type="image/png")

    @app.get("/api/why", summary="Why two indexed images match: the similarity and, per "
             "image, a heatmap of where it comes from (PNG, base64)",
             dependencies=[Depends(same_site)])
    def why(query: int, result: int,
            feature_set: str = Query(..., max_length=1000)) -> dict[str, Any]:
        import base64

        from semsearch.explore.why import similarity_maps

        fs = FeatureSet.parse(feature_set)
        served_model(fs.base.model)
        a, b = with_file(query), with_file(result)
        maps = similarity_maps(sess, fs.base, a.path, b.path)
        encode = base64.b64encode
        return {"feature_set": str(fs.base), "similarity": maps.similarity,
                "query_png": "data:image/png;base64," + encode(maps.query_png).decode(),
                "result_png": "data:image/png;base64," + encode(maps.result_png).decode()}

    # -- the page -----------------------------------------------------------------------------

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _CSP})

    return app


# A query image may hold at most this many pixels (a small PNG can decode to gigabytes).
QUERY_MAX_PIXELS = 40_000_000


def check_query_size(data: bytes) -> None:
    """Raises BadImageError if an uploaded or fetched image is too large to decode safely;
    reads only its header."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 - the decoder says what is wrong, with a 415
        return
    if width * height > QUERY_MAX_PIXELS:
        raise BadImageError("query image", f"{width}x{height} is too large to decode safely "
                            f"(at most {QUERY_MAX_PIXELS // 1_000_000} megapixels)")


def same_site(request: Request) -> None:
    """Refuses (403) a request for costly work (rendering, embedding, writing caches) that
    another site's page made, e.g. through an <img> tag: browsers say so in Sec-Fetch-Site."""
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise HTTPException(403, "refusing a request sent by another site's page")


def _cross_site(request: Request) -> bool:
    """Gives whether the browser says another site's page sent this request."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if not origin:
        return False  # not from a browser page (curl, scripts)
    return origin.split("://", 1)[-1] != request.headers.get("host", "")


# The page loads only its own scripts and styles; images come from the API.
_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'")

_BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                  "WEBP": "image/webp", "BMP": "image/bmp"}


def _browser_type(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _BROWSER_TYPES.get(im.format or "")
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"cannot be read: {exc}") from None


def _collection_json(summary: CollectionSummary) -> dict[str, Any]:
    c = summary.collection
    return {"id": c.id, "name": c.name, "root": c.root, "images": summary.images,
            "labels": summary.labels, "labeled": summary.labeled}


def _search_json(result: SearchResult) -> dict[str, Any]:
    return {
        "query": result.query, "query_label": result.query_label,
        "feature_set": result.feature_set, "metric": result.metric,
        "weighted_p15": result.weighted_p15,
        "embed_ms": round(result.embed_ms, 2), "search_ms": round(result.search_ms, 2),
        "hits": [{"rank": h.rank, "id": h.image_id, "label": h.label,
                  "name": Path(h.path).name, "distance": h.distance,
                  "similarity": round(h.similarity, 2), "score": h.score,
                  "same_class": h.same_class}
                 for h in result.hits],
    }


def _focused_json(sess: Session, c: Collection, image_id: int, feature_set: str | None,
                  focus: str, k: int) -> dict[str, Any]:
    from semsearch.query.collection import labeled
    from semsearch.query.focus import focused_search

    record = resolve_feature_set(sess, c, feature_set)
    query = KnownImageQuery(image_id)
    result = labeled(sess, c, focused_search(sess, query, record, focus, k=k, within=c.root),
                     query)
    focus_name = result.focus.name if result.focus else focus
    return _search_json(replace(result, feature_set=f"{result.feature_set}, focus on "
                                f"{focus_name}"))


def _tokens_of(request: Request) -> list[str]:
    """Gives the tokens a request carries: Authorization: Bearer, ?token= on the page's
    address, and the cookie."""
    found = []
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    if request.url.path == "/" and (given := request.query_params.get("token")):
        found.append(given)
    if cookie := request.cookies.get(TOKEN_COOKIE):
        found.append(cookie)
    return found


_NEEDS_TOKEN = (b'<!doctype html><meta charset="utf-8"><title>ConvNet Playground</title>'
                b"<h1>ConvNet Playground</h1><p>This server needs its token. Open the address "
                b"<code>semsearch serve</code> printed when it started: it ends in "
                b"<code>?token=...</code>.</p>")

# Opens the page once the cookie is set; the refresh is the page's own navigation.
_SIGNED_IN = (b'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/">'
              b"<title>ConvNet Playground</title><p>Token accepted. "
              b'<a href="/">Open ConvNet Playground</a>.</p>')


class _BodyLimit:
    """ASGI middleware refusing (413) a request body above `limit_for(path)` bytes, whether
    declared by Content-Length or sent in chunks, without reading on."""

    def __init__(self, app: Any, limit_for: Any) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(self.limit_for(scope["path"]))
        too_large = f"the request body is larger than {limit:,} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared and (not declared.isdigit() or int(declared) > limit):
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def capped() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, capped, send)
