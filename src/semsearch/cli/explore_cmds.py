"""`semsearch models`, `layers` and `explore`: what the models are, their layers, what
their channels respond to and what they see in an image."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from semsearch.cli.arguments import names, path_argument
from semsearch.cli.output import Bar, print_json, print_records
from semsearch.config import Config
from semsearch.errors import ConfigError
from semsearch.models.onnx_file import onnx_input
from semsearch.models.registry import ModelRegistry, default_registry
from semsearch.session import Session


@contextmanager
def _render_session(config: Config, registry: ModelRegistry) -> Iterator[Session]:
    # These need no catalogue: a throwaway one leaves the user's untouched.
    import tempfile

    from semsearch.store import Store

    with tempfile.TemporaryDirectory(prefix="semsearch-") as tmp, Session(
            config, registry=registry, store=Store.open(Path(tmp) / "scratch.db")) as session:
        yield session


def cmd_explore_render(args: argparse.Namespace, config: Config) -> int:
    from dataclasses import replace

    from semsearch.explore.channels import render_layers
    from semsearch.explore.visualize import RenderSettings

    if args.channels < 1 or args.steps < 1:
        raise ConfigError("--channels and --steps must be at least 1")
    settings = replace(RenderSettings(), steps=args.steps)
    with _render_session(config, default_registry()) as session:
        bar = Bar(not args.quiet, "rendering")
        try:
            result = render_layers(session, args.model, names(args.layers, "--layers"),
                                   args.channels, settings, progress=bar)
        finally:
            bar.close()
    fresh = result.fresh
    cpu = sum(item.cpu_seconds for item in fresh)
    if args.json:
        print_json({"model": args.model, "layers": result.layers, "images": len(result.images),
                    "rendered": len(fresh),
                    "cpu_seconds_per_image": cpu / len(fresh) if fresh else None,
                    "files": [str(item.path) for item in result.images]})
        return 0
    print(f"{args.model}: {len(result.images)} channel images for {len(result.layers)} layers "
          f"({len(fresh)} rendered now, {len(result.images) - len(fresh)} from the cache)")
    if fresh:
        print(f"  {cpu / len(fresh):.1f} CPU seconds per image ({args.steps} steps, "
              f"{settings.size} px)")
    print(f"  in {result.images[0].path.parent.parent}")
    return 0


def cmd_explore_classes(args: argparse.Namespace, config: Config) -> int:
    from semsearch.explore.why import top_classes

    path = path_argument(args.image)
    with _render_session(config, default_registry()) as session:
        guesses = top_classes(session, args.model, path)
    return print_records(args.json, guesses, lambda guess: (
        f"{guess.probability * 100:6.2f}%  {guess.name}  (class {guess.index})"))


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    from semsearch.models.summary import summarize

    return print_records(
        args.json, summarize(default_registry()),
        lambda row: f"{row.name:<8} {row.params / 1e6:9.2f}M {row.layers:7d} "
                    f"{row.input_size:5d}px  {row.description}",
        header=f"{'model':<8} {'params':>10} {'layers':>7} {'input':>6}  description")


def cmd_layers(args: argparse.Namespace, config: Config) -> int:
    from semsearch.models.summary import layers

    table = layers(default_registry(), args.model, onnx_input(config))
    if args.json:
        print_json([{**asdict(layer), "shape": list(layer.shape)} for layer in table])
        return 0
    print(f"{'layer':<40} {'type':<24} {'channels':>8} {'size':>9} {'stride':>6} {'params':>10}")
    for layer in table:
        size = f"{layer.height}x{layer.width}" if layer.height else "-"
        stride = str(layer.stride) if layer.stride else "-"
        print(f"{layer.name:<40} {layer.type:<24} {layer.channels:8d} {size:>9} {stride:>6} "
              f"{layer.params:10,d}")
    return 0
