"""What the routes share, per app: the session, the settings, the fetch policy, the limits on
concurrent work and a few caches (kept on `app.state.web`), and the FastAPI dependencies that
hand them, or a collection or an image, to a route."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from semsearch.config import Config
from semsearch.errors import SemsearchError
from semsearch.query.collection import Collection, get_collection
from semsearch.session import Session
from semsearch.store import ImageRecord
from semsearch.web import security
from semsearch.web.fetch import FetchPolicy

if TYPE_CHECKING:  # the summaries build networks: torch is loaded only when they are asked
    from semsearch.models.summary import ModelSummary

@dataclass
class WebState:
    session: Session
    config: Config
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    upload_max_bytes: int = security.UPLOAD_MAX_BYTES
    # The folder the page opens on (`semsearch serve PATH`), resolved; None: the oldest.
    default_root: str | None = None
    # Query images are decoded a few at a time: a small file can hold a large image.
    decoding: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(2))
    # A URL search can wait on a slow server for its whole deadline; a few at once at most,
    # so they cannot take every worker thread.
    fetching: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(4))
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _models: list[ModelSummary] = field(default_factory=list, init=False, repr=False)

    def served_model(self, name: str) -> str:
        """Gives name if the API may load it (see security.served_model)."""
        return security.served_model(self.session, self.config.model, name)

    def served_feature_set(self, name: str | None) -> str | None:
        """Gives the feature set name if its model may be loaded."""
        return security.served_feature_set(self.session, self.config.model, name)

    def models(self) -> list[ModelSummary]:
        """Gives the registered models, summarized once (each summary builds a network)."""
        from semsearch.models.summary import summarize

        with self._lock:
            if not self._models:
                self._models.extend(summarize(self.session.registry))
            return self._models

    def fetch(self, url: str) -> bytes:
        """Gives the image at url, fetched under the fetch policy, a few fetches at once (a
        503 asking to retry when more are waiting)."""
        from semsearch.web.fetch import fetch

        if not self.fetching.acquire(blocking=False):
            raise HTTPException(503, "too many URL fetches at once; try again",
                                headers={"Retry-After": "2"})
        try:
            return fetch(url, self.fetch_policy)
        finally:
            self.fetching.release()

    def feature_layer(self, model: str) -> str | None:
        """Gives the layer the model's classifier reads (None if the model is unknown)."""
        try:
            return self.session.models.spec(model).default_layer or None
        except SemsearchError:
            return None

    def layer_depth(self, model: str, layer: str) -> int:
        """Gives the layer's position in the model (-1 if unknown)."""
        try:
            table = self.session.models.layer_table(model)
        except SemsearchError:
            return -1
        return next((depth for depth, info in enumerate(table) if info.name == layer), -1)


def attach(app: FastAPI, state: WebState) -> None:
    """Makes state the one the app's routes are given."""
    app.state.web = state


def web_state(request: Request) -> WebState:
    """Gives the app's shared state."""
    state: WebState = request.app.state.web
    return state


Web = Annotated[WebState, Depends(web_state)]


def collection(cid: int, web: Web) -> Collection:
    """Gives the collection of the path's id (a 404 for an unknown one)."""
    return get_collection(web.session.store, cid)


def image_file(image_id: int, web: Web) -> ImageRecord:
    """Gives the record of the path's image if its file may be served (see
    security.with_file)."""
    return security.with_file(web.session.store, image_id)


CollectionOf = Annotated[Collection, Depends(collection)]
ImageFile = Annotated[ImageRecord, Depends(image_file)]
