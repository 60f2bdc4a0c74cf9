"""Parsed arguments turned into what the library takes: the settings, a path a person
typed, a comma-separated list, the feature set the flags name."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from semsearch.config import Config, default_config_file, resolve
from semsearch.errors import ConfigError
from semsearch.featureset import FeatureSet
from semsearch.images import check_name
from semsearch.session import Session


def config_of(args: argparse.Namespace) -> Config:
    """Gives the settings: the flags, then the environment, the config file and defaults."""
    config_file = Path(args.config) if args.config else default_config_file(os.environ)
    return resolve(vars(args), config_file=config_file)


def open_session(config: Config, create: bool = False) -> Session:
    """Gives the session a command works in (the one seam tests replace, through this
    module: commands call `arguments.open_session`)."""
    return Session(config, create=create)


def path_argument(text: str) -> str:
    """Gives a PATH argument as typed, or raises ConfigError if it is empty or unprintable."""
    if not text.strip():
        raise ConfigError("PATH must not be empty")
    check_name(text)
    return text


def names(text: str, what: str) -> list[str]:
    """Gives the items of a comma-separated flag; none at all is an error."""
    found = [part.strip() for part in text.split(",") if part.strip()]
    if not found:
        raise ConfigError(f"{what} must name at least one item")
    return found


def chosen(args: argparse.Namespace, session: Session) -> FeatureSet:
    """Gives the feature set the flags name; with --adapter, a --model, --layer or --pool
    that the adapter's base contradicts is an error, not ignored."""
    return session.feature_set(args.model, args.layer, args.pool)


def named_feature_set(args: argparse.Namespace, session: Session) -> FeatureSet | None:
    """Gives the feature set the flags name, or None if no flag names one: a search then
    takes the one indexed (see query.written.indexed_feature_set)."""
    named = any(getattr(args, name) is not None for name in ("model", "layer", "pool", "adapter"))
    return chosen(args, session) if named else None
