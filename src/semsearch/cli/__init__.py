"""The `semsearch` command: parse, build objects, call the library, turn errors into one
clear line and a non-zero exit. parser.py holds the argparse tree, output.py the printing,
and the commands live by topic: index_cmds, search_cmds, evaluate_cmds, explore_cmds,
serve."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import warnings
from collections.abc import Sequence

from semsearch.cli.arguments import config_of
from semsearch.cli.evaluate_cmds import cmd_adapt, cmd_compare
from semsearch.cli.explore_cmds import (
    cmd_explore_classes,
    cmd_explore_render,
    cmd_layers,
    cmd_models,
)
from semsearch.cli.index_cmds import cmd_index, cmd_info, cmd_remove
from semsearch.cli.parser import Command, build_parser
from semsearch.cli.search_cmds import cmd_search, cmd_tags
from semsearch.cli.serve import cmd_serve
from semsearch.errors import SemsearchError
from semsearch.query.written import means_words as _is_text  # noqa: F401 - its old name here

EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own, for a command line it cannot parse
EXIT_INTERRUPTED = 130


def _commands() -> dict[str, Command]:
    # Read when main runs, so that a replaced command (cli.cmd_models = ...) is the one run.
    return {"index": cmd_index, "search": cmd_search, "tags": cmd_tags,
            "compare": cmd_compare, "adapt": cmd_adapt, "serve": cmd_serve,
            "explore render": cmd_explore_render, "explore classes": cmd_explore_classes,
            "info": cmd_info, "remove": cmd_remove, "models": cmd_models,
            "layers": cmd_layers}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command line; gives the exit code (argparse exits 2 on a usage error)."""
    args = build_parser(_commands()).parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("semsearch").setLevel(logging.INFO if args.verbose else logging.ERROR)
    # semsearch applies its own pixel cap (max_pixels) and says so per file.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    # Pillow warns about odd EXIF or metadata; a file's real problems are reported per file.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    run: Command = args.run
    try:
        return run(args, config_of(args))
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
