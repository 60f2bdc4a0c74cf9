"""What an indexing run is given: the settings, the catalogue, its indexes and the models
(a session has them all)."""

from __future__ import annotations

from typing import Protocol

from semsearch.config import Config
from semsearch.embed.hub import Models
from semsearch.index.catalog import IndexCatalog
from semsearch.store import Store


class Workspace(Protocol):
    config: Config
    store: Store
    catalog: IndexCatalog
    models: Models
