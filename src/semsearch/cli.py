"""The `semsearch` command: parse, build objects, call the library, turn errors into one
clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sqlite3
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from semsearch import __version__
from semsearch.config import Config, default_config_file, resolve, settings
from semsearch.errors import ConfigError, NotIndexedError, QueryError, SemsearchError
from semsearch.featureset import FeatureSet
from semsearch.images import check_name, real_path
from semsearch.models.onnx_file import onnx_input
from semsearch.models.registry import ModelRegistry
from semsearch.query.hits import FocusClass, SearchResult
from semsearch.session import Session

RENDER_STEPS = 128  # the default of RenderSettings, without importing it at start-up

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_FEATURE_FLAGS = ("model", "layer", "pool", "adapter", "flat_max_dims")
_INDEX_FLAGS = ("index", "nprobe", "ef_search", "refine_k", "index_on_disk")
_RUN_FLAGS = ("runtime", "threads", "max_pixels", "cache_dir", "onnx_size", "onnx_mean",
              "onnx_std", "onnx_layout", "onnx_channels")


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    table = {s.name: s for s in settings()}
    for name in names:
        setting = table[name]
        default = "" if setting.default is None else f" (default {setting.default})"
        parser.add_argument(setting.flag, dest=name, default=None, metavar=name.upper(),
                            help=setting.help + default)


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="TOML file of settings")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semsearch", description="Semantic image search with convolutional networks."
    )
    parser.add_argument("--version", action="version", version=f"semsearch {__version__}")
    _add_common(parser, argparse.SUPPRESS)
    parser.set_defaults(config=None, verbose=False, quiet=False)
    # The same options after the command name (`semsearch index -q DIR`).
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parser = sub.add_parser

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return add_parser(name, help=help, parents=[common])

    p = command("index", help="index a folder of images (incremental)")
    p.add_argument("path", help="folder or image file")
    _add_settings(p, ("db", *_FEATURE_FLAGS, "metric", "minkowski_p", "expand_k", *_INDEX_FLAGS,
                      "batch_size", "workers", *_RUN_FLAGS, "engine"))
    p.add_argument("--address", "--ray-address", dest="ray_address", default=None,
                   metavar="HOST:PORT", help="Ray cluster for --engine ray: its head's "
                   "HOST:PORT, or auto (default: a new local one)")
    p.add_argument("--text", action="store_true",
                   help="also keep the class probabilities that search by words reads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_index)

    p = command("search", help="find the images nearest to a query image, or to words")
    p.add_argument("query", help="an image file (indexed or not), an indexed id (N or id:N), "
                   "or words (\"red sports car\")")
    p.add_argument("--text", action="store_true",
                   help="take the query as words even if a file or id has that name")
    p.add_argument("--focus", default=None, metavar="CLASS",
                   help="similar with respect to one class (an ImageNet class name, or words "
                        "near one): e.g. --focus cat")
    p.add_argument("-k", "--k", dest="k", default=None, metavar="K",
                   help="number of results (default 10)")
    _add_settings(p, ("db", *_FEATURE_FLAGS, "metric", "minkowski_p", "expand_k", *_INDEX_FLAGS,
                      *_RUN_FLAGS))
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(run=cmd_search)

    p = command("tags", help="the words that best describe an indexed image")
    p.add_argument("image", help="an indexed image file, or its id")
    p.add_argument("-n", dest="count", type=int, default=5,
                   help="how many words, 1 to 100 (default 5)")
    _add_settings(p, ("db", "model", *_RUN_FLAGS))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_tags)

    p = command("compare", help="score models x layers x poolings x metrics on a labeled "
                "folder (one sub-folder per class)")
    p.add_argument("path", help="a folder with one sub-folder of images per class")
    p.add_argument("--models", default="lite0,lite1,lite2",
                   help="comma-separated models (default lite0,lite1,lite2)")
    p.add_argument("--layers", default="auto",
                   help="comma-separated layer names, or auto: 8 convolutional layers spread "
                        "over each model's depth (default auto)")
    p.add_argument("--pool", dest="pools", default="avg,gem",
                   help="comma-separated poolings (default avg,gem)")
    p.add_argument("--metrics", default="cosine,euclidean",
                   help="comma-separated metrics: cosine, euclidean, sqeuclidean, minkowski, "
                        "ip (default cosine,euclidean)")
    p.add_argument("-k", "--k", dest="k", default=None, metavar="K",
                   help="depth of precision@k and recall@k (default 10)")
    p.add_argument("--top", type=int, default=15, metavar="N",
                   help="leaderboard rows to print (default 15)")
    p.add_argument("--out", default="semsearch-compare", metavar="FOLDER",
                   help="where to write leaderboard.json/.csv and the PNG charts "
                        "(default ./semsearch-compare)")
    _add_settings(p, ("db", "minkowski_p", "batch_size", "workers", *_RUN_FLAGS))
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=cmd_compare)

    p = command("adapt", help="learn a projection of the vectors from a labeled folder (one "
                "sub-folder per class), saved as an adapter for index and search")
    p.add_argument("path", help="a folder with one sub-folder of images per class")
    p.add_argument("--name", required=True,
                   help="the adapter's name; index and search use it with --adapter NAME")
    p.add_argument("--heldout", type=float, default=0.3, metavar="FRACTION",
                   help="fraction of each class kept out of training to measure the gain "
                        "(default 0.3; 0 trains on everything and measures nothing)")
    p.add_argument("--dim", type=int, default=128, help="dimensions of the projection "
                   "(default 128)")
    p.add_argument("--epochs", type=int, default=300, help="training epochs (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    p.add_argument("--text", action="store_true",
                   help="map images into the sentence model's space from the folder names, so "
                        "that words (search \"...\" --adapter NAME) find them")
    p.add_argument("--captions", default=None, metavar="CSV",
                   help="with --text: learn from a CSV of path,caption rows instead of folder "
                        "names (paths relative to PATH)")
    _add_settings(p, ("db", "model", "layer", "pool", "flat_max_dims", "batch_size", "workers",
                      *_RUN_FLAGS))
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=cmd_adapt)

    p = command("serve", help="serve ConvNet Playground (web page and JSON API), on 127.0.0.1 "
                "unless --host says otherwise")
    p.add_argument("path", nargs="?", help="a folder to index first (incremental)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    _add_settings(p, ("db", *_FEATURE_FLAGS, "metric", "minkowski_p", "expand_k", *_INDEX_FLAGS,
                      "batch_size", "workers", "host", "token", *_RUN_FLAGS))
    p.set_defaults(run=cmd_serve)

    p = command("explore", help="what a model's channels respond to")
    explore = p.add_subparsers(dest="explore_command", metavar="WHAT", required=True)
    q = explore.add_parser("render", parents=[common],
                           help="pre-render channel visualizations into the cache")
    q.add_argument("--model", default="lite0", help="a registered model (default lite0)")
    q.add_argument("--layers", default="auto",
                   help="comma-separated layers, or auto: 8 spread over the depth")
    q.add_argument("--channels", type=int, default=30,
                   help="first N channels of each layer (default 30)")
    q.add_argument("--steps", type=int, default=RENDER_STEPS,
                   help=f"optimization steps per image (default {RENDER_STEPS})")
    _add_settings(q, ("cache_dir", "threads"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=cmd_explore_render)
    q = explore.add_parser("classes", parents=[common],
                           help="the model's top-5 ImageNet classes of an image")
    q.add_argument("image")
    q.add_argument("--model", default="lite0")
    _add_settings(q, ("cache_dir", "threads", "max_pixels"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=cmd_explore_classes)

    p = command("info", help="what is indexed, per feature set")
    _add_settings(p, ("db",))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_info)

    p = command("remove", help="remove an image, or every image under a folder")
    p.add_argument("path")
    _add_settings(p, ("db",))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_remove)

    p = command("models", help="list the available models, smallest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = command("layers", help="list a model's layers")
    p.add_argument("model", help="a model name, or onnx:PATH for your own ONNX model")
    _add_settings(p, ("onnx_size", "onnx_mean", "onnx_std", "onnx_layout", "onnx_channels"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_layers)
    return parser


def _config(args: argparse.Namespace) -> Config:
    config_file = Path(args.config) if args.config else default_config_file(os.environ)
    return resolve(vars(args), config_file=config_file)


def _session(config: Config, create: bool = False) -> Session:
    return Session(config, create=create)


def _path_argument(text: str) -> str:
    if not text.strip():
        raise ConfigError("PATH must not be empty")
    check_name(text)
    return text


def _chosen(args: argparse.Namespace, session: Session) -> FeatureSet:
    """Gives the feature set the flags name; with --adapter, a --model, --layer or --pool
    that the adapter's base contradicts is an error, not ignored."""
    return session.feature_set(args.model, args.layer, args.pool)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


class _Bar:
    """A tqdm progress bar on stderr, shown only to a person at a terminal."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self._bar: Any = None
        self._enabled = enabled and sys.stderr.isatty()
        self._desc = desc

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self._desc, unit="img", file=sys.stderr)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    root = _path_argument(args.path)
    with _session(config, create=True) as session:
        bar = _Bar(not args.quiet, "indexing")
        try:
            report = session.index(root, feature_set=_chosen(args, session), progress=bar)
            if args.text:
                from semsearch.query.words import index_text

                index_text(session, root, progress=bar)
        finally:
            bar.close()
    if args.json:
        _print_json({**asdict(report), "images_per_second": report.images_per_second})
        return 0
    print(f"{report.root}: {report.found} image files, {', '.join(report.feature_sets)}")
    print(f"  embedded {report.embedded}, unchanged {report.unchanged}, moved {report.moved}, "
          f"touched {report.touched}, removed {report.removed}, skipped {len(report.failed)} "
          f"in {report.seconds:.1f}s ({report.images_per_second:.1f} img/s)")
    if report.failed:
        print(f"skipped {len(report.failed)} file(s):")
        for item in report.failed:
            print(f"  {item.path}: {item.reason}")
    return 0


def _is_text(query: str) -> bool:
    """Gives whether a query means words: not an image file, not written like an image file
    name (a mistyped path is an error), and not an image id."""
    from semsearch.images import is_supported

    text = query.strip()
    number = text[3:] if text.startswith("id:") else text
    return not (os.path.isfile(text) or is_supported(text)
                or (number.isascii() and number.isdigit()))


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    if args.focus is not None and not args.focus.strip():
        raise ConfigError("--focus needs a class name, e.g. --focus cat")
    if args.text or _is_text(args.query):
        if args.focus:
            raise ConfigError("--focus applies to an image query, not to words")
        return _search_text(args, config)
    if args.focus:
        return _search_focused(args, config)
    try:
        return _search_image(args, config)
    except (QueryError, NotIndexedError) as exc:
        raise type(exc)(f"{exc} (to search these words, add --text)") from None


def _search_image(args: argparse.Namespace, config: Config) -> int:
    chosen = any(getattr(args, name) is not None
                 for name in ("model", "layer", "pool", "adapter"))
    with _session(config) as session:
        result = session.search(args.query,
                                feature_set=_chosen(args, session) if chosen else None)
    head = {"query": result.query, "feature_set": result.feature_set, "metric": result.metric}
    return _print_hits(args, result, head, f"query {result.query}  [{result.feature_set}, "
                       f"{result.metric}, embed {result.embed_ms:.0f} ms, search "
                       f"{result.search_ms:.1f} ms]", by_distance=True)


def _search_text(args: argparse.Namespace, config: Config) -> int:
    from semsearch.query.words import search_text, words_adapter

    with _session(config) as session:
        # An image adapter from the settings does not apply to words; one named here must.
        adapter = (config.adapter if args.adapter is not None
                   else words_adapter(session, config.adapter))
        result = search_text(session, args.query, k=config.k, adapter=adapter)
    head = {"query": result.query, "mode": "text", "feature_set": result.feature_set,
            "embed_ms": result.embed_ms, "search_ms": result.search_ms}
    return _print_hits(args, result, head, f"words \"{result.query}\"  [{result.feature_set} "
                       f"via class names, embed {result.embed_ms:.0f} ms, search "
                       f"{result.search_ms:.1f} ms]")


def _print_hits(args: argparse.Namespace, result: SearchResult, head: dict[str, Any],
                title: str, *, by_distance: bool = False) -> int:
    """Prints a search's hits as JSON or lines: with the distance and the calibrated score
    for a search by image, with the cosine score for words and focus."""
    if args.json:
        rows = [{"rank": h.rank, "image_id": h.image_id, "path": h.path, "label": h.label,
                 **({"distance": h.distance} if by_distance else {}), "score": h.score}
                for h in result.hits]
        if by_distance:
            _print_json({**head, "hits": rows, "embed_ms": result.embed_ms,
                         "search_ms": result.search_ms})
        else:
            _print_json({**head, "hits": rows})
        return 0
    print(title)
    if by_distance and not result.hits:
        print("  no results: the index is empty")
    for hit in result.hits:
        if by_distance:
            print(f"{hit.rank:4d}  {hit.score * 100:5.1f}%  d={hit.distance:<10.4g} "
                  f"{hit.label:<20s} {hit.path}")
        else:
            print(f"{hit.rank:4d}  {hit.score:6.3f}  {hit.label:<20s} {hit.path}")
    return 0


def _search_focused(args: argparse.Namespace, config: Config) -> int:
    from semsearch.query.focus import focused_search

    chosen = any(getattr(args, name) is not None
                 for name in ("model", "layer", "pool", "adapter"))
    with _session(config) as session:
        query = session.search_service().resolve(args.query)
        record = session.indexed_feature_set(_chosen(args, session) if chosen else None)
        result = focused_search(session, query, record, args.focus, k=config.k)
    focus = result.focus or FocusClass(-1, args.focus)
    seconds = (result.embed_ms + result.search_ms) / 1000
    head = {"query": result.query, "focus": asdict(focus), "feature_set": result.feature_set,
            "seconds": seconds}
    return _print_hits(args, result, head, f"query {result.query}  [{result.feature_set}, "
                       f"focus on \"{focus.name}\" (class {focus.index}), "
                       f"{seconds * 1000:.0f} ms]")


def cmd_tags(args: argparse.Namespace, config: Config) -> int:
    from semsearch.query.words import image_tags

    if not 1 <= args.count <= 100:
        raise ConfigError(f"-n must be from 1 to 100, not {args.count}")
    with _session(config) as session:
        query = session.search_service().resolve(args.image)
        image_id = getattr(query, "image_id", None)
        if image_id is None:
            raise ConfigError(f"{args.image} is not indexed (or changed since); index its "
                              "folder with --text first")
        tags = image_tags(session, image_id, k=args.count)
    if args.json:
        _print_json([asdict(tag) for tag in tags])
        return 0
    for tag in tags:
        print(f"{tag.score:6.3f}  {tag.word}")
    return 0


def _names(text: str, what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"{what} must name at least one item")
    return names


def cmd_compare(args: argparse.Namespace, config: Config) -> int:
    from semsearch.evaluate.leaderboard import (
        as_json,
        leaderboard_rows,
        prepare_folder,
        write_outputs,
    )
    from semsearch.evaluate.sweep import run_sweep

    root = _path_argument(args.path)
    if args.top < 0:
        raise ConfigError(f"--top must be 0 or more, not {args.top}")
    prepare_folder(args.out)
    bars: dict[str, _Bar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = _Bar(not args.quiet, stage)
        bars[stage](done, total)

    with _session(config, create=True) as session:
        try:
            result = run_sweep(session, root, models=_names(args.models, "--models"),
                               layers=_names(args.layers, "--layers"),
                               poolings=_names(args.pools, "--pool"),
                               metrics=_names(args.metrics, "--metrics"), k=config.k,
                               progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
    paths = write_outputs(result, args.out)
    if args.json:
        _print_json({**as_json(result), "files": [str(p) for p in paths]})
        return 0
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
    for row in leaderboard_rows(result)[:args.top]:
        print(f"{row['rank']:4d}  {row['model']:<8} {row['layer']:<28} {row['pooling']:<5} "
              f"{row['metric']:<16} {row['weighted_p15']:6.2f} {row['precision_at_k']:6.3f} "
              f"{row['recall_at_k']:6.3f} {row['map']:6.3f} {row['nn_accuracy']:6.3f}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_adapt(args: argparse.Namespace, config: Config) -> int:
    from semsearch.evaluate.adapt import TrainSettings, adapt

    settings = TrainSettings(dim=args.dim, epochs=args.epochs, seed=args.seed)
    with _session(config, create=True) as session:
        bar = _Bar(not args.quiet, "embedding")
        try:
            root = _path_argument(args.path)
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
        _print_json({
            "adapter": result.adapter.name, "feature_set": str(result.feature_set),
            "base": str(result.adapter.base), "root": result.root, "classes": result.classes,
            "trained_on": result.trained_on, "heldout": result.heldout,
            "measured": result.measured,
            "before": asdict(result.before) if result.before else None,
            "after": asdict(result.after) if result.after else None,
            "final_loss": result.final_loss, "train_seconds": result.train_seconds,
            "skipped": [asdict(item) for item in result.report.failed]})
        return 0
    print(f"adapter {result.adapter.name}: {result.adapter.base} -> {result.feature_set} "
          f"({result.adapter.weights.shape[0]} -> {result.adapter.weights.shape[1]} dims)")
    print(f"  trained on {result.trained_on} images in {result.classes} classes in "
          f"{result.train_seconds:.1f}s (final loss {result.final_loss:.3f}); "
          f"{result.heldout} held out")
    for item in result.report.failed:
        print(f"  skipped {item.path}: {item.reason}")
    if result.after and (args.text or args.captions):
        a = result.after
        b_map = f"{result.before.map:.3f}" if result.before else "n/a (no classifier)"
        print(f"  held-out search by the class names (among {result.measured} held-out "
              f"images): mAP zero-shot {b_map} -> adapted {a.map:.3f}, "
              f"P@{config.k} {a.precision_at_k:.3f}")
    elif result.before and result.after:
        b, a = result.before, result.after
        print(f"  held-out retrieval (cosine, among {result.measured} held-out images of "
              "classes with two or more held out):")
        print(f"    {'':8} {'wP@15':>7} {f'P@{config.k}':>7} {'mAP':>7} {'NN acc':>7}")
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
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    import uvicorn

    from semsearch.web.app import create_app
    from semsearch.web.security import serving

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, not {args.port}")
    _check_listen(config.host, args.port)  # before indexing, and before printing an address
    with _session(config, create=True) as session:
        if args.path is not None:
            bar = _Bar(not args.quiet, "indexing")
            try:
                report = session.index(_path_argument(args.path),
                                       feature_set=_chosen(args, session), progress=bar)
            finally:
                bar.close()
            print(f"{report.root}: {report.found} images ({report.embedded} embedded, "
                  f"{len(report.failed)} skipped)")
        plan = serving(config, args.port)
        app = create_app(plan.config, session=session, allowed_hosts=plan.allowed_hosts)
        print(f"ConvNet Playground: {plan.address}", flush=True)
        if plan.everywhere:
            print(f"  (listening on every address of this machine, {config.host}; use the "
                  "name or address other machines know it by)", flush=True)
        print("  API description at /openapi.json; Ctrl-C stops" + (
            "; every request needs the token (plain HTTP: use it on networks you trust, or "
            "behind a TLS proxy)" if plan.config.token else ""), flush=True)
        uvicorn.run(app, host=config.host, port=args.port, log_level="warning")
    return 0


def _check_listen(host: str, port: int) -> None:
    """Raises ConfigError if this machine cannot listen on host:port (an address it does
    not have, a port in use or reserved)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}"
                          ) from None


def cmd_explore_render(args: argparse.Namespace, config: Config) -> int:
    from dataclasses import replace

    from semsearch.evaluate.sweep import choose_layers
    from semsearch.explore.channels import channel_image
    from semsearch.explore.visualize import RenderSettings
    from semsearch.models.summary import layers as layer_table

    if args.channels < 1 or args.steps < 1:
        raise ConfigError("--channels and --steps must be at least 1")
    settings = replace(RenderSettings(), steps=args.steps)
    registry = _registry()
    spec = registry.get(args.model)
    table = layer_table(registry, args.model)
    chosen = choose_layers(table, _names(args.layers, "--layers"), args.model, spec.default_layer)
    by_name = {layer.name: layer for layer in table}
    jobs = [(layer, c) for layer in chosen for c in range(min(args.channels,
                                                               by_name[layer].channels))]
    rendered = []
    with _render_session(config, registry) as session:
        bar = _Bar(not args.quiet, "rendering")
        try:
            for done, (layer, channel) in enumerate(jobs):
                bar(done, len(jobs))
                rendered.append((layer, channel, channel_image(session, args.model, layer,
                                                               channel, settings)))
            bar(len(jobs), len(jobs))
        finally:
            bar.close()
    fresh = [item for _, _, item in rendered if not item.cached]
    cpu = sum(item.cpu_seconds for item in fresh)
    if args.json:
        _print_json({"model": args.model, "layers": chosen, "images": len(rendered),
                     "rendered": len(fresh),
                     "cpu_seconds_per_image": cpu / len(fresh) if fresh else None,
                     "files": [str(item.path) for _, _, item in rendered]})
        return 0
    print(f"{args.model}: {len(rendered)} channel images for {len(chosen)} layers "
          f"({len(fresh)} rendered now, {len(rendered) - len(fresh)} from the cache)")
    if fresh:
        print(f"  {cpu / len(fresh):.1f} CPU seconds per image ({args.steps} steps, "
              f"{settings.size} px)")
    print(f"  in {rendered[0][2].path.parent.parent}")
    return 0


@contextmanager
def _render_session(config: Config, registry: ModelRegistry) -> Iterator[Session]:
    # These need no catalogue: a throwaway one leaves the user's untouched.
    import tempfile

    from semsearch.store import Store

    with tempfile.TemporaryDirectory(prefix="semsearch-") as tmp, Session(
            config, registry=registry, store=Store.open(Path(tmp) / "scratch.db")) as session:
        yield session


def cmd_explore_classes(args: argparse.Namespace, config: Config) -> int:
    from semsearch.explore.why import top_classes

    path = _path_argument(args.image)
    registry = _registry()
    with _render_session(config, registry) as session:
        guesses = top_classes(session, args.model, path)
    if args.json:
        _print_json([asdict(g) for g in guesses])
        return 0
    for guess in guesses:
        print(f"{guess.probability * 100:6.2f}%  {guess.name}  (class {guess.index})")
    return 0


def cmd_info(args: argparse.Namespace, config: Config) -> int:
    with _session(config) as session:
        info = session.info()
    if args.json:
        _print_json(asdict(info))
        return 0
    print(f"catalogue {info.db} (schema v{info.schema_version}): {info.images} images")
    if not info.feature_sets:
        print("  nothing indexed yet; run `semsearch index FOLDER`")
    for item in info.feature_sets:
        print(f"  {item.feature_set}  {item.vectors} vectors x {item.dim} dims  "
              f"[{item.preprocessing}]")
        for status in item.indexes:
            state = "fresh" if status.fresh else "stale, rebuilt when next used"
            extra = f", {status.expansion}" if status.expansion else ""
            if status.recall_at_10 is not None:
                extra += (f", recall@10 {status.recall_at_10:.3f} against exact search"
                          + (f" ({status.search_params})" if status.search_params else ""))
            if status.ram_bytes_per_vector is not None:
                extra += f", {status.ram_bytes_per_vector:.0f} bytes of RAM per vector"
            print(f"    index {status.index} {status.metric}: {status.count} vectors, "
                  f"{state}{extra}")
    return 0


def cmd_remove(args: argparse.Namespace, config: Config) -> int:
    with _session(config) as session:
        removed = session.remove(_path_argument(args.path))
    if args.json:
        _print_json({"path": real_path(args.path), "removed": removed})
    else:
        print(f"removed {removed} image(s) under {real_path(args.path)}")
    return 0


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    from semsearch.models.summary import summarize

    rows = summarize(_registry())
    if args.json:
        _print_json([asdict(row) for row in rows])
        return 0
    print(f"{'model':<8} {'params':>10} {'layers':>7} {'input':>6}  description")
    for row in rows:
        print(f"{row.name:<8} {row.params / 1e6:9.2f}M {row.layers:7d} "
              f"{row.input_size:5d}px  {row.description}")
    return 0


def cmd_layers(args: argparse.Namespace, config: Config) -> int:
    from semsearch.models.summary import layers

    table = layers(_registry(), args.model, onnx_input(config))
    if args.json:
        _print_json([{**asdict(layer), "shape": list(layer.shape)} for layer in table])
        return 0
    print(f"{'layer':<40} {'type':<24} {'channels':>8} {'size':>9} {'stride':>6} {'params':>10}")
    for layer in table:
        size = f"{layer.height}x{layer.width}" if layer.height else "-"
        stride = str(layer.stride) if layer.stride else "-"
        print(f"{layer.name:<40} {layer.type:<24} {layer.channels:8d} {size:>9} {stride:>6} "
              f"{layer.params:10,d}")
    return 0


def _registry() -> ModelRegistry:
    from semsearch.models.registry import default_registry

    return default_registry()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("semsearch").setLevel(logging.INFO if args.verbose else logging.ERROR)
    # semsearch applies its own pixel cap (max_pixels) and says so per file.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    # Pillow warns about odd EXIF or metadata; a file's real problems are reported per file.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    run: Callable[[argparse.Namespace, Config], int] = args.run
    try:
        return run(args, _config(args))
    except SemsearchError as exc:
        print(f"semsearch: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("semsearch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`semsearch search ... | head`); that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, sqlite3.Error) as exc:
        # The machine said no (permissions, full disk, a locked database): say so plainly.
        detail = getattr(exc, "strerror", None) or str(exc)
        where = getattr(exc, "filename", None)
        print(f"semsearch: error: {str(where) + ': ' if where else ''}{detail}",
              file=sys.stderr)
        return EXIT_ERROR
