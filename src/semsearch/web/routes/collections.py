"""The indexed folders: their list, one with its feature sets, and its images by class."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from semsearch.query.collection import (
    collection_feature_sets,
    collection_images,
    default_feature_set,
    list_collections,
    summarize,
)
from semsearch.web.deps import CollectionOf, Web
from semsearch.web.schemas import (
    CollectionDetail,
    CollectionOut,
    FeatureSetOut,
    ImageListing,
    ImageOut,
)
from semsearch.web.security import same_site

router = APIRouter()


@router.get("/api/collections", summary="Indexed folders, with image counts and labels")
def collections(web: Web) -> list[CollectionOut]:
    store = web.session.store
    return [CollectionOut.of(summarize(store, c)) for c in list_collections(store)]


@router.get("/api/collections/{cid}", summary="One collection and its feature sets",
            dependencies=[Depends(same_site)])
def one_collection(c: CollectionOf, web: Web) -> CollectionDetail:
    sets = collection_feature_sets(web.session.store, c)
    default = default_feature_set(web.session, c).name if sets else None
    return CollectionDetail(
        **CollectionOut.of(summarize(web.session.store, c)).model_dump(),
        default_feature_set=default,
        feature_sets=[FeatureSetOut.of(item, web.layer_depth(
            item.record.feature_set.models[0], item.record.feature_set.layer),
            web.feature_layer(item.record.feature_set.models[0]),
            web.session.models.title(item.record.feature_set)) for item in sets])


@router.get("/api/collections/{cid}/images", summary="A collection's images, by class")
def images(c: CollectionOf, web: Web, offset: int = Query(0, ge=0),
           limit: int = Query(1000, ge=1, le=20000)) -> ImageListing:
    records = collection_images(web.session.store, c)
    return ImageListing(total=len(records), offset=offset, images=[
        ImageOut.of(r, c.label(r.path) or "") for r in records[offset:offset + limit]])
