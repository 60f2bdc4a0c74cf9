"""`semsearch compare` (a leaderboard of models x layers x poolings x metrics on a labeled
folder) and `adapt` (a projection learned from one)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from semsearch.cli import arguments
from semsearch.cli.arguments import names, path_argument
from semsearch.cli.output import Bar, StageBars, print_json
from semsearch.config import Config
from semsearch.errors import ConfigError

if TYPE_CHECKING:
    from semsearch.evaluate.adapt import AdaptResult
    from semsearch.evaluate.sweep import SweepResult


def cmd_compare(args: argparse.Namespace, config: Config) -> int:
    from semsearch.evaluate.leaderboard import as_json, prepare_folder, write_outputs
    from semsearch.evaluate.sweep import run_sweep

    root = path_argument(args.path)
    if args.top < 0:
        raise ConfigError(f"--top must be 0 or more, not {args.top}")
    prepare_folder(args.out)
    bars = StageBars(not args.quiet)
    with arguments.open_session(config, create=True) as session:
        try:
            result = run_sweep(session, root, models=names(args.models, "--models"),
                               layers=names(args.layers, "--layers"),
                               poolings=names(args.pools, "--pool"),
                               metrics=names(args.metrics, "--metrics"), k=config.k,
                               progress=bars)
        finally:
            bars.close()
    paths = write_outputs(result, args.out)
    if args.json:
        print_json({**as_json(result), "files": [str(p) for p in paths]})
    else:
        _print_leaderboard(result, args.top)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _print_leaderboard(result: SweepResult, top: int) -> None:
    from semsearch.evaluate.leaderboard import leaderboard_rows

    embedded = sum(report.embedded for report in result.reports)
    print(f"{result.root}: {result.images} images in {result.classes} classes; embedded "
          f"{embedded} image-model pairs, scored {len(result.rows)} configurations in "
          f"{result.seconds:.1f}s (comparison run {result.sweep.id})")
    if result.unlabeled:
        print(f"  left out {result.unlabeled} image(s) directly in the folder, in no class")
    skipped = [item for report in result.reports for item in report.failed]
    for item in dict.fromkeys(skipped):
        print(f"  skipped {item.path}: {item.reason}")
    print(f"{'rank':>4}  {'model':<8} {'layer':<28} {'pool':<5} {'metric':<16} "
          f"{'wP@15':>6} {f'P@{result.k}':>6} {f'R@{result.k}':>6} {'mAP':>6} {'NN acc':>6}")
    for row in leaderboard_rows(result)[:top]:
        print(f"{row['rank']:4d}  {row['model']:<8} {row['layer']:<28} {row['pooling']:<5} "
              f"{row['metric']:<16} {row['weighted_p15']:6.2f} {row['precision_at_k']:6.3f} "
              f"{row['recall_at_k']:6.3f} {row['map']:6.3f} {row['nn_accuracy']:6.3f}")


def cmd_adapt(args: argparse.Namespace, config: Config) -> int:
    from semsearch.evaluate.adapt import TrainSettings, adapt

    settings = TrainSettings(dim=args.dim, epochs=args.epochs, seed=args.seed)
    with arguments.open_session(config, create=True) as session:
        bar = Bar(not args.quiet, "embedding")
        try:
            root = path_argument(args.path)
            captions = None
            if args.captions:
                from semsearch.evaluate.adapt import read_captions

                captions = read_captions(args.captions, root)
            result = adapt(session, root, args.name, heldout=args.heldout,
                           settings=settings, text=args.text or captions is not None,
                           captions=captions, progress=bar)
        finally:
            bar.close()
    if args.json:
        print_json(_adapt_json(result))
    else:
        _print_adapt(result, words=bool(args.text or args.captions), k=config.k)
    return 0


def _adapt_json(result: AdaptResult) -> dict[str, Any]:
    return {
        "adapter": result.adapter.name, "feature_set": str(result.feature_set),
        "base": str(result.adapter.base), "root": result.root, "classes": result.classes,
        "trained_on": result.trained_on, "heldout": result.heldout,
        "measured": result.measured,
        "before": asdict(result.before) if result.before else None,
        "after": asdict(result.after) if result.after else None,
        "final_loss": result.final_loss, "train_seconds": result.train_seconds,
        "skipped": [asdict(item) for item in result.report.failed]}


def _print_adapt(result: AdaptResult, *, words: bool, k: int) -> None:
    print(f"adapter {result.adapter.name}: {result.adapter.base} -> {result.feature_set} "
          f"({result.adapter.weights.shape[0]} -> {result.adapter.weights.shape[1]} dims)")
    print(f"  trained on {result.trained_on} images in {result.classes} classes in "
          f"{result.train_seconds:.1f}s (final loss {result.final_loss:.3f}); "
          f"{result.heldout} held out")
    for item in result.report.failed:
        print(f"  skipped {item.path}: {item.reason}")
    if result.after and words:
        a = result.after
        b_map = f"{result.before.map:.3f}" if result.before else "n/a (no classifier)"
        print(f"  held-out search by the class names (among {result.measured} held-out "
              f"images): mAP zero-shot {b_map} -> adapted {a.map:.3f}, "
              f"P@{k} {a.precision_at_k:.3f}")
    elif result.before and result.after:
        b, a = result.before, result.after
        print(f"  held-out retrieval (cosine, among {result.measured} held-out images of "
              "classes with two or more held out):")
        print(f"    {'':8} {'wP@15':>7} {f'P@{k}':>7} {'mAP':>7} {'NN acc':>7}")
        for label, s in (("before", b), ("after", a)):
            print(f"    {label:8} {s.weighted_p15:7.2f} {s.precision_at_k:7.3f} {s.map:7.3f} "
                  f"{s.nn_accuracy:7.3f}")
        print(f"    gain     {a.weighted_p15 - b.weighted_p15:+7.2f} "
              f"{a.precision_at_k - b.precision_at_k:+7.3f} {a.map - b.map:+7.3f} "
              f"{a.nn_accuracy - b.nn_accuracy:+7.3f}")
    elif result.heldout:
        print("  not measured: too few images held out per class (two per class are needed "
              "in two classes or more)")
    else:
        print("  not measured: nothing was held out")
    print(f"use it: semsearch search IMAGE --adapter {result.adapter.name}  "
          f"(index other folders with --adapter {result.adapter.name})")
