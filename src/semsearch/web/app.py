"""The JSON API and the static page of ConvNet Playground, wired together: the shared state,
the guards (security.py), the error statuses (errors.py), one router per resource (routes/)
and the static files. The routes hold no logic of their own."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from semsearch.config import Config
from semsearch.models.registry import ModelRegistry
from semsearch.session import Session
from semsearch.web import errors, security
from semsearch.web.deps import WebState, attach
from semsearch.web.fetch import FetchPolicy
from semsearch.web.routes import (
    collections,
    evaluations,
    explore,
    images,
    maps,
    models,
    page,
    search,
)

ROUTERS = (collections, images, models, search, evaluations, maps, explore, page)


def create_app(config: Config, *, registry: ModelRegistry | None = None,
               session: Session | None = None, fetch_policy: FetchPolicy | None = None,
               upload_max_bytes: int = security.UPLOAD_MAX_BYTES,
               allowed_hosts: tuple[str, ...] = security.LOOPBACK_HOSTS,
               default_collection: str | None = None) -> FastAPI:
    """Gives the FastAPI application serving the catalogue of `config` (or `session`).
    Without a token (config.token), requests must name one of `allowed_hosts` (a web page
    cannot reach the server by pointing its own name at 127.0.0.1); with one, any host name
    is accepted and every request but the static files must carry the token. A POST from
    another site's page is refused, and request bodies are capped."""
    # The API description stays at /openapi.json; the /docs and /redoc pages would load
    # scripts from a CDN into this origin.
    app = FastAPI(title="semsearch: ConvNet Playground",
                  description="Semantic image search with convolutional networks.",
                  version="1", docs_url=None, redoc_url=None)
    attach(app, WebState(session or Session(config, registry=registry, create=True), config,
                         fetch_policy or FetchPolicy(), upload_max_bytes,
                         default_collection))
    security.install(app, token=config.token, allowed_hosts=allowed_hosts,
                     upload_max_bytes=upload_max_bytes)
    errors.add_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    return app
