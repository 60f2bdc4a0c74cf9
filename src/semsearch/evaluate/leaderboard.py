"""A sweep's results as files: the leaderboard as JSON and CSV, and PNG charts of score per
layer for each model (the original compare view) and of the best configurations."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from semsearch.atomic import write_bytes_atomically
from semsearch.errors import ConfigError
from semsearch.evaluate.sweep import ConfigScore, SweepResult

_COLUMNS = ("rank", "model", "layer", "pooling", "metric", "depth", "weighted_p15",
            "precision_at_k", "recall_at_k", "map", "nn_accuracy", "queries")
BEST_SHOWN = 15


def leaderboard_rows(result: SweepResult) -> list[dict[str, Any]]:
    """Gives the leaderboard, best first, one flat dict per configuration."""
    return [{"rank": rank, "model": row.model, "layer": row.layer, "pooling": row.pooling,
             "metric": row.metric, "depth": row.depth,
             "weighted_p15": row.overall.weighted_p15,
             "precision_at_k": row.overall.precision_at_k,
             "recall_at_k": row.overall.recall_at_k, "map": row.overall.map,
             "nn_accuracy": row.overall.nn_accuracy, "queries": row.overall.queries}
            for rank, row in enumerate(result.rows, 1)]


def as_json(result: SweepResult) -> dict[str, Any]:
    """Gives everything a sweep found, per-class breakdowns included, as plain JSON values."""
    return {
        "sweep_id": result.sweep.id,
        "root": result.root,
        "images": result.images,
        "classes": result.classes,
        "k": result.k,
        "layers": result.layers,
        "seconds": result.seconds,
        "unlabeled": result.unlabeled,
        "embedded": {model: report.embedded
                     for model, report in zip(result.layers, result.reports, strict=True)},
        "skipped": [asdict(item) for report in result.reports for item in report.failed],
        "leaderboard": [
            {**flat, "per_class": {c: asdict(s) for c, s in row.per_class.items()}}
            for flat, row in zip(leaderboard_rows(result), result.rows, strict=True)
        ],
    }


def prepare_folder(folder: str | os.PathLike[str]) -> Path:
    """Gives the output folder, made if missing; raises ConfigError if it cannot be (checked
    before a long run, not after)."""
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use {out} as the output folder: "
                          f"{exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"cannot write into the output folder {out}")
    return out


def write_outputs(result: SweepResult, folder: str | os.PathLike[str]) -> list[Path]:
    """Writes leaderboard.json, leaderboard.csv, layers.png and best.png into folder (made if
    missing); gives their paths."""
    out = prepare_folder(folder)
    paths = [out / "leaderboard.json", out / "leaderboard.csv", out / "layers.png",
             out / "best.png"]
    write_bytes_atomically(paths[0], json.dumps(as_json(result), indent=2,
                                          ensure_ascii=False).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(leaderboard_rows(result))
    write_bytes_atomically(paths[1], text.getvalue().encode())
    write_bytes_atomically(paths[2], _layers_chart(result))
    write_bytes_atomically(paths[3], _best_chart(result))
    return paths


def _figure(width: float, height: float) -> Any:
    # A bare Figure on the Agg canvas: no pyplot, so the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Gives text that matplotlib shows as it is ($ would start mathematics)."""
    return text.replace("$", r"\$")


def _layers_chart(result: SweepResult) -> bytes:
    """One panel per model: weighted precision at 15 per layer (in network order), a line
    per pooling x metric, the model's best configuration marked."""
    models = list(result.layers)
    figure = _figure(5.2 * len(models), 4.2)
    axes = figure.subplots(1, len(models), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        names = result.layers[model]
        mine = [row for row in result.rows if row.model == model]
        series: dict[tuple[str, str], dict[str, float]] = {}
        for row in mine:
            series.setdefault((row.pooling, row.metric), {})[row.layer] = row.overall.weighted_p15
        for (pooling, metric), by_layer in sorted(series.items()):
            ax.plot(range(len(names)), [by_layer.get(n, float("nan")) for n in names],
                    marker="o", markersize=3, linewidth=1.2,
                    label=_plain(f"{pooling}, {metric}"))
        best = mine[0]
        ax.plot([names.index(best.layer)], [best.overall.weighted_p15], marker="*",
                markersize=14, color="gold", markeredgecolor="black", linestyle="none",
                label=_plain(f"best: {_short(best)}"))
        ax.set_title(_plain(model))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_plain(n) for n in names], rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("weighted precision at 15 (%)")
    figure.suptitle(_plain(f"{os.path.basename(result.root)}: score per layer "
                           f"({result.images} images, {result.classes} classes)"))
    figure.tight_layout()
    return _png(figure)


def _best_chart(result: SweepResult) -> bytes:
    """The best configurations overall, as horizontal bars of weighted precision at 15."""
    best = result.rows[:BEST_SHOWN]
    figure = _figure(8, 0.35 * len(best) + 1.4)
    ax = figure.subplots()
    scores = [row.overall.weighted_p15 for row in best]
    ax.barh(range(len(best)), scores, color="#3b78b0")
    for i, row in enumerate(best):
        ax.text(scores[i] + 0.5, i, f"{scores[i]:.1f}  (mAP {row.overall.map:.2f})",
                va="center", fontsize=7)
    ax.set_yticks(range(len(best)))
    ax.set_yticklabels([_plain(_short(row)) for row in best], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xlabel("weighted precision at 15 (%)")
    ax.set_title(_plain(f"{os.path.basename(result.root)}: best configurations"))
    figure.tight_layout()
    return _png(figure)


def _short(row: ConfigScore) -> str:
    return f"{row.model}@{row.layer}/{row.pooling}, {row.metric}"
