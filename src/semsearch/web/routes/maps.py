"""2-D maps of a collection's images for a feature set."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from semsearch.query.collection import resolve_feature_set
from semsearch.web.deps import CollectionOf, Web
from semsearch.web.schemas import MapOut
from semsearch.web.security import same_site

router = APIRouter()


@router.get("/api/collections/{cid}/map", summary="2-D map (UMAP) of a collection for a "
            "feature set, computed once and cached", dependencies=[Depends(same_site)])
def collection_map(c: CollectionOf, web: Web, feature_set: str | None = None) -> MapOut:
    from semsearch.explore.maps import shown_map

    record = resolve_feature_set(web.session, c, web.served_feature_set(feature_set))
    return MapOut.of(record.name, shown_map(web.session.store, record, c.root))
