"""Distances between vectors, by name: what every index, evaluation and search ranks by."""

from __future__ import annotations

from dataclasses import dataclass

from semsearch.errors import UnknownMetricError

METRICS = ("cosine", "euclidean", "sqeuclidean", "minkowski", "ip")

@dataclass(frozen=True)
class Metric:
    """A distance. Distances are always "smaller is closer": cosine gives 1 - cos,
    ip gives the negated inner product, minkowski gives (sum |x - y|^p)^(1/p)."""

    name: str = "cosine"
    p: float = 3.0

    def __post_init__(self) -> None:
        if self.name not in METRICS:
            raise UnknownMetricError(
                f"unknown metric {self.name!r}; choose one of {', '.join(METRICS)}"
            )
        if self.name == "minkowski" and not self.p >= 1:
            raise UnknownMetricError(f"minkowski needs p >= 1, not {self.p}")

    @property
    def tag(self) -> str:
        """Gives a file-name-safe name that includes p for minkowski."""
        return f"minkowski-p{self.p:g}" if self.name == "minkowski" else self.name

    def __str__(self) -> str:
        return f"minkowski(p={self.p:g})" if self.name == "minkowski" else self.name


_METRIC_TITLES = {"cosine": "cosine", "euclidean": "Euclidean distance",
                  "sqeuclidean": "squared Euclidean distance", "ip": "inner product"}


def metric_title(metric: Metric, expand_k: int = 0) -> str:
    """Gives the metric line in words, e.g. "cosine, with database-side augmentation over
    10 neighbours" (what `cosine + DBA k=10` means)."""
    title = (f"Minkowski distance, p={metric.p:g}" if metric.name == "minkowski"
             else _METRIC_TITLES[metric.name])
    if expand_k:
        title += f", with database-side augmentation over {expand_k} neighbours"
    return title
