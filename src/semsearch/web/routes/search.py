"""Searches within a collection: by an indexed image (optionally focused on a class), by an
uploaded image, by an image URL, and by words. Every one answers a SearchResponse."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from semsearch.errors import QueryError
from semsearch.query.collection import Collection, search_collection
from semsearch.query.hits import SearchResult
from semsearch.query.service import ImageQuery, KnownImageQuery
from semsearch.web.deps import CollectionOf, Web, WebState
from semsearch.web.schemas import MAX_K, SearchResponse, UrlSearch
from semsearch.web.security import check_query_size, same_site

router = APIRouter()


@router.get("/api/collections/{cid}/search", summary="Search by an indexed image's id",
            dependencies=[Depends(same_site)])
def search_by_id(c: CollectionOf, web: Web, image_id: int, feature_set: str | None = None,
                 metric: str | None = None, k: int = Query(15, ge=1, le=MAX_K),
                 focus: str | None = Query(None, max_length=300)) -> SearchResponse:
    feature_set = web.served_feature_set(feature_set)
    if focus:
        from semsearch.query.focus import focus_collection

        return SearchResponse.of(focus_collection(web.session, c, KnownImageQuery(image_id),
                                                  feature_set, focus, k=k))
    return SearchResponse.of(search_collection(web.session, c, KnownImageQuery(image_id),
                                               feature_set=feature_set, metric=metric, k=k))


@router.post("/api/collections/{cid}/search/upload",
             summary="Search by an uploaded image (the request body is the image file)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/*": {"schema": {"type": "string", "format": "binary"}}}}})
async def search_by_upload(c: CollectionOf, request: Request, web: Web,
                           feature_set: str | None = None, metric: str | None = None,
                           k: int = Query(15, ge=1, le=MAX_K)) -> SearchResponse:
    data = await request.body()  # capped by security.BodyLimit
    if not data:
        raise QueryError("the upload is empty; send the image file as the request body")
    await run_in_threadpool(web.served_feature_set, feature_set)
    result = await run_in_threadpool(_search_image, web, c, data, feature_set=feature_set,
                                     metric=metric, k=k)
    return SearchResponse.of(result)


@router.post("/api/collections/{cid}/search/url", summary="Search by an image URL")
def search_by_url(c: CollectionOf, web: Web, body: UrlSearch) -> SearchResponse:
    from semsearch.index.metric import Metric

    web.served_feature_set(body.feature_set)
    if body.metric:
        Metric(body.metric)  # a bad one is refused before anything is fetched
    data = web.fetch(body.url)
    return SearchResponse.of(_search_image(web, c, data, feature_set=body.feature_set,
                                           metric=body.metric, k=body.k))


@router.get("/api/collections/{cid}/search/text", summary="Search by words (zero-shot, "
            "through the classifier's class names)", dependencies=[Depends(same_site)],
            response_model_exclude={"query_label"})  # words have no query image
def search_by_text(c: CollectionOf, web: Web, q: str = Query(..., max_length=1000),
                   k: int = Query(15, ge=1, le=MAX_K)) -> SearchResponse:
    from semsearch.query.words import search_collection_words

    return SearchResponse.of(search_collection_words(web.session, c, q, k=k))


def _search_image(web: WebState, c: Collection, data: bytes, **options: Any
                  ) -> SearchResult:
    """Gives the search by an image's bytes, once its size is known to be safe to decode, and
    with few decoded at once."""
    check_query_size(data)
    with web.decoding:
        return search_collection(web.session, c, ImageQuery(data=data), **options)
