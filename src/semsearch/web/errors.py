"""Domain errors as HTTP answers: each kind of SemsearchError has its status, and the body is
always {"detail": a message a person can act on}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
from semsearch.web.fetch import FetchError

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


def add_handlers(app: FastAPI) -> None:
    """Makes the app answer domain errors, a busy renderer, out-of-range numbers and bad
    values with their status and a detail."""
    from semsearch.explore.channels import RenderBusy

    @app.exception_handler(SemsearchError)
    async def domain_error(_request: Request, exc: SemsearchError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(RenderBusy)
    async def busy(_request: Request, exc: RenderBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "3"})

    @app.exception_handler(OverflowError)
    async def out_of_range(_request: Request, _exc: OverflowError) -> JSONResponse:
        # An id beyond 64 bits reaches the catalogue as a number it cannot hold.
        return JSONResponse({"detail": "a number in the request is out of range"},
                            status_code=422)

    @app.exception_handler(ValueError)
    async def value_error(_request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)
