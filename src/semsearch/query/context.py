"""What the services above the store are given: a Context. `Session` is the one that
front ends build; a service types against this, so it never imports the session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from semsearch.config import Config
from semsearch.embed.hub import Models
from semsearch.index.catalog import IndexCatalog
from semsearch.index.metric import Metric
from semsearch.store import Store

if TYPE_CHECKING:
    from semsearch.query.service import SearchService
    from semsearch.query.text_model import TextModel


class Context(Protocol):
    """The catalogue, its indexes, the models and the settings of one session."""

    config: Config
    store: Store
    catalog: IndexCatalog
    models: Models

    def metric(self, name: str | None = None, p: float | None = None) -> Metric: ...

    def text_model(self) -> TextModel: ...

    def search_service(self) -> SearchService: ...
