"""Comparison runs (`semsearch compare`) of a collection, and one run's scores."""

from __future__ import annotations

from fastapi import APIRouter

from semsearch.web.deps import CollectionOf, Web
from semsearch.web.schemas import EvaluationDetail, EvaluationOut

router = APIRouter()


@router.get("/api/collections/{cid}/evaluations", summary="Comparison runs of a collection")
def evaluations(c: CollectionOf, web: Web) -> list[EvaluationOut]:
    return [EvaluationOut.of(run) for run in web.session.store.sweeps(c.root)]


@router.get("/api/evaluations/{sweep_id}", summary="A comparison run's scores; with "
            "image_id, that image's own score per configuration too")
def evaluation(sweep_id: int, web: Web, image_id: int | None = None) -> EvaluationDetail:
    store = web.session.store
    rows = store.sweep_rows(sweep_id)  # an unknown run says so
    (run,) = (run for run in store.sweeps() if run.id == sweep_id)
    return EvaluationDetail.of(run, rows, image_id)
