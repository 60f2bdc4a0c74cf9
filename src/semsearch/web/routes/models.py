"""The models the API offers, a model's layers, and the search options with their
defaults."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from semsearch.web.deps import Web
from semsearch.web.schemas import MAX_K, LayerOut, ModelOut, Options
from semsearch.web.security import same_site

router = APIRouter()


@router.get("/api/models", summary="Available models, smallest first")
def models(web: Web) -> list[ModelOut]:
    return [ModelOut(**asdict(row)) for row in web.models()]


@router.get("/api/models/{name}/layers", summary="A model's layers in execution order",
            dependencies=[Depends(same_site)])
def layers(name: str, web: Web) -> list[LayerOut]:
    return [LayerOut.of(layer)
            for layer in web.session.models.layer_table(web.served_model(name))]


@router.get("/api/options", summary="Poolings, metrics and the defaults")
def options(web: Web) -> Options:
    from semsearch.featureset import POOLINGS
    from semsearch.index.metric import METRICS
    from semsearch.query.collection import collection_holding

    served = collection_holding(web.session.store, web.default_root) if web.default_root else None
    return Options(poolings=list(POOLINGS), metrics=list(METRICS),
                   default_metric=web.config.metric, default_k=15, max_k=MAX_K,
                   expand_k=web.config.expand_k, upload_max_bytes=web.upload_max_bytes,
                   default_collection=served.id if served else None)
