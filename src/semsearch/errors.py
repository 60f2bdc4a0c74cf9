"""The error tree. Every error semsearch raises on purpose is a SemsearchError whose message
is written for a person; front ends show the message, never a traceback."""

from __future__ import annotations


class SemsearchError(Exception):
    """Base of every deliberate semsearch error."""


class ConfigError(SemsearchError):
    """A setting has an unknown name or a value that does not parse."""


class BadImageError(SemsearchError):
    """A file could not be used as an image; `reason` says why in a few words."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownModelError(SemsearchError):
    """No model of that name is registered."""


class ModelCacheError(SemsearchError):
    """An exported model graph cannot be written to or read from the cache folder."""


class UnknownLayerError(SemsearchError):
    """The model has no addressable layer of that name."""


class FeatureSetError(SemsearchError):
    """A feature-set string, pooling or pooled size is not usable."""


class UnknownMetricError(SemsearchError):
    """No distance metric of that name."""


class StoreError(SemsearchError):
    """The catalogue cannot be opened, read or written."""


class StoreVersionError(StoreError):
    """The catalogue's schema is newer than this version of semsearch understands."""


class NotIndexedError(SemsearchError):
    """The requested image or feature set is not in the catalogue."""


class QueryError(SemsearchError):
    """A search query cannot be understood."""


class EvaluationError(SemsearchError):
    """A folder cannot be scored as asked: too few images or classes."""
