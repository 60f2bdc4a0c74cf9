"""The argparse tree of `semsearch`: one helper per command adds its arguments; settings
flags (--db, --model, ...) take their help and default from the one table in config."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence

from semsearch import __version__
from semsearch.config import Config, settings

# A command: the parsed arguments and the resolved settings in, the exit code out.
Command = Callable[[argparse.Namespace, Config], int]

RENDER_STEPS = 128  # the default of RenderSettings, without importing it at start-up

_FEATURE_FLAGS = ("model", "layer", "pool", "adapter", "flat_max_dims")
_INDEX_FLAGS = ("index", "nprobe", "ef_search", "refine_k", "index_on_disk")
_RUN_FLAGS = ("runtime", "threads", "max_pixels", "cache_dir", "onnx_size", "onnx_mean",
              "onnx_std", "onnx_layout", "onnx_channels")
_SEARCH_FLAGS = ("db", *_FEATURE_FLAGS, "metric", "minkowski_p", "expand_k", *_INDEX_FLAGS)


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


def _index(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="folder or image file")
    _add_settings(p, (*_SEARCH_FLAGS, "batch_size", "workers", *_RUN_FLAGS, "engine"))
    p.add_argument("--address", "--ray-address", dest="ray_address", default=None,
                   metavar="HOST:PORT", help="Ray cluster for --engine ray: its head's "
                   "HOST:PORT, or auto (default: a new local one)")
    p.add_argument("--text", action="store_true",
                   help="also keep the class probabilities that search by words reads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _search(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", help="an image file (indexed or not), an indexed id (N or id:N), "
                   "or words (\"red sports car\")")
    p.add_argument("--text", action="store_true",
                   help="take the query as words even if a file or id has that name")
    p.add_argument("--focus", default=None, metavar="CLASS",
                   help="similar with respect to one class (an ImageNet class name, or words "
                        "near one): e.g. --focus cat")
    p.add_argument("-k", "--k", dest="k", default=None, metavar="K",
                   help="number of results (default 10)")
    _add_settings(p, (*_SEARCH_FLAGS, *_RUN_FLAGS))
    p.add_argument("--json", action="store_true", help="print results as JSON")


def _tags(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="an indexed image file, or its id")
    p.add_argument("-n", dest="count", type=int, default=5,
                   help="how many words, 1 to 100 (default 5)")
    _add_settings(p, ("db", "model", *_RUN_FLAGS))
    p.add_argument("--json", action="store_true")


def _compare(p: argparse.ArgumentParser) -> None:
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


def _adapt(p: argparse.ArgumentParser) -> None:
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


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="a folder to index first (incremental)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    _add_settings(p, (*_SEARCH_FLAGS, "batch_size", "workers", "host", "token", *_RUN_FLAGS))


def _explore_render(q: argparse.ArgumentParser) -> None:
    q.add_argument("--model", default="lite0", help="a registered model (default lite0)")
    q.add_argument("--layers", default="auto",
                   help="comma-separated layers, or auto: 8 spread over the depth")
    q.add_argument("--channels", type=int, default=30,
                   help="first N channels of each layer (default 30)")
    q.add_argument("--steps", type=int, default=RENDER_STEPS,
                   help=f"optimization steps per image (default {RENDER_STEPS})")
    _add_settings(q, ("cache_dir", "threads"))
    q.add_argument("--json", action="store_true")


def _explore_classes(q: argparse.ArgumentParser) -> None:
    q.add_argument("image")
    q.add_argument("--model", default="lite0")
    _add_settings(q, ("cache_dir", "threads", "max_pixels"))
    q.add_argument("--json", action="store_true")


def _info(p: argparse.ArgumentParser) -> None:
    _add_settings(p, ("db",))
    p.add_argument("--json", action="store_true")


def _remove(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    _info(p)


def _models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def _layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model name, or onnx:PATH for your own ONNX model")
    _add_settings(p, ("onnx_size", "onnx_mean", "onnx_std", "onnx_layout", "onnx_channels"))
    p.add_argument("--json", action="store_true")


# (name, help, arguments), in the order --help lists them; "explore" has sub-commands.
_Arguments = Callable[[argparse.ArgumentParser], None]
_COMMANDS: tuple[tuple[str, str, _Arguments | None], ...] = (
    ("index", "index a folder of images (incremental)", _index),
    ("search", "find the images nearest to a query image, or to words", _search),
    ("tags", "the words that best describe an indexed image", _tags),
    ("compare", "score models x layers x poolings x metrics on a labeled folder (one "
     "sub-folder per class)", _compare),
    ("adapt", "learn a projection of the vectors from a labeled folder (one sub-folder per "
     "class), saved as an adapter for index and search", _adapt),
    ("serve", "serve ConvNet Playground (web page and JSON API), on 127.0.0.1 unless --host "
     "says otherwise", _serve),
    ("explore", "what a model's channels respond to", None),
    ("info", "what is indexed, per feature set", _info),
    ("remove", "remove an image, or every image under a folder", _remove),
    ("models", "list the available models, smallest first", _models),
    ("layers", "list a model's layers", _layers),
)
_EXPLORE: tuple[tuple[str, str, _Arguments], ...] = (
    ("render", "pre-render channel visualizations into the cache", _explore_render),
    ("classes", "the model's top-5 ImageNet classes of an image", _explore_classes),
)


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """Gives the parser of every command; a parsed command's `run` is its entry of commands
    (keyed by name, "explore render" for a sub-command)."""
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
    for name, help, arguments in _COMMANDS:
        p = sub.add_parser(name, help=help, parents=[common])
        if arguments is not None:
            arguments(p)
            p.set_defaults(run=commands[name])
            continue
        explore = p.add_subparsers(dest=f"{name}_command", metavar="WHAT", required=True)
        for what, what_help, what_arguments in _EXPLORE:
            q = explore.add_parser(what, parents=[common], help=what_help)
            what_arguments(q)
            q.set_defaults(run=commands[f"{name} {what}"])
    return parser
