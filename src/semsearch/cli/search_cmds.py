"""`semsearch search` (by an image, an indexed id, words, or with a focus) and `tags`."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from semsearch.cli import arguments
from semsearch.cli.arguments import named_feature_set
from semsearch.cli.output import print_hits, print_records
from semsearch.config import Config
from semsearch.errors import ConfigError, NotIndexedError, QueryError
from semsearch.query.hits import FocusClass
from semsearch.query.written import focused_written, means_words


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    if args.focus is not None and not args.focus.strip():
        raise ConfigError("--focus needs a class name, e.g. --focus cat")
    if args.text or means_words(args.query):
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
    with arguments.open_session(config, create=False) as session:
        result = session.search(args.query, feature_set=named_feature_set(args, session))
    head = {"query": result.query, "feature_set": result.feature_set, "metric": result.metric}
    return print_hits(args.json, result, head, f"query {result.query}  [{result.feature_set}, "
                      f"{result.metric}, embed {result.embed_ms:.0f} ms, search "
                      f"{result.search_ms:.1f} ms]", by_distance=True)


def _search_text(args: argparse.Namespace, config: Config) -> int:
    from semsearch.query.words import search_text, words_adapter

    with arguments.open_session(config, create=False) as session:
        # An image adapter from the settings does not apply to words; one named here must.
        adapter = (config.adapter if args.adapter is not None
                   else words_adapter(session, config.adapter))
        result = search_text(session, args.query, k=config.k, adapter=adapter)
    head = {"query": result.query, "mode": "text", "feature_set": result.feature_set,
            "embed_ms": result.embed_ms, "search_ms": result.search_ms}
    return print_hits(args.json, result, head, f"words \"{result.query}\"  "
                      f"[{result.feature_set} via class names, embed {result.embed_ms:.0f} ms, "
                      f"search {result.search_ms:.1f} ms]")


def _search_focused(args: argparse.Namespace, config: Config) -> int:
    with arguments.open_session(config, create=False) as session:
        result = focused_written(session, args.query, args.focus,
                                 feature_set=named_feature_set(args, session))
    focus = result.focus or FocusClass(-1, args.focus)
    seconds = (result.embed_ms + result.search_ms) / 1000
    head = {"query": result.query, "focus": asdict(focus), "feature_set": result.feature_set,
            "seconds": seconds}
    return print_hits(args.json, result, head, f"query {result.query}  [{result.feature_set}, "
                      f"focus on \"{focus.name}\" (class {focus.index}), "
                      f"{seconds * 1000:.0f} ms]")


def cmd_tags(args: argparse.Namespace, config: Config) -> int:
    from semsearch.query.words import image_tags

    if not 1 <= args.count <= 100:
        raise ConfigError(f"-n must be from 1 to 100, not {args.count}")
    with arguments.open_session(config, create=False) as session:
        query = session.search_service().resolve(args.image)
        image_id = getattr(query, "image_id", None)
        if image_id is None:
            raise ConfigError(f"{args.image} is not indexed (or changed since); index its "
                              "folder with --text first")
        tags = image_tags(session, image_id, k=args.count)
    return print_records(args.json, tags, lambda tag: f"{tag.score:6.3f}  {tag.word}")
