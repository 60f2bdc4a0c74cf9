"""The Ray runtime an indexing run uses: checking that Ray is installed and the cluster
reachable before any model loads, connecting to (or starting) a cluster, and keeping Ray's
own output off the user's terminal. Ray is imported here only, when a run needs it."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from semsearch.config import Config
from semsearch.errors import ConfigError

log = logging.getLogger(__name__)

_CONNECT_SECONDS = 5.0


def check_cluster(config: Config) -> None:
    """Raises ConfigError if Ray is missing or the configured cluster cannot be reached
    (cheap: call it before loading a model)."""
    _import_ray()
    if config.ray_address:
        _check_reachable(config.ray_address)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("the ray engine needs Ray: pip install 'semsearch[ray]' (on every "
                          "node of the cluster)") from None
    return ray


def _check_reachable(address: str) -> None:
    # ray.init retries an unreachable head for minutes, printing as it goes.
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if match is None:
        return  # "auto", "local": Ray finds (or starts) the cluster itself
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=_CONNECT_SECONDS).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc} (is `ray start --head` running there?)"
                          ) from None


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    # Ray's C++ core writes start-up notes straight to file descriptor 2.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def ray_runtime(address: str | None = None) -> Iterator[Any]:
    """Gives the `ray` module connected to a cluster: the one this process is already
    connected to; else the one at address (HOST:PORT of its head, or auto); else a new
    local one with a CPU per core. What it started it shuts down."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        _check_reachable(address)
    quiet = not log.isEnabledFor(logging.INFO)  # -v shows what Ray says
    if quiet:
        # The C++ core would log every actor Ray Data makes (a known, harmless warning
        # about restarts and constructor arguments); errors still reach us as exceptions.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    started = time.perf_counter()
    try:
        with _stderr_silenced() if quiet else nullcontext():
            if address:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                # "local": a new one, even if `ray start` left one running on this machine.
                ray.init(address="local", num_cpus=os.cpu_count() or 1,
                         include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - whatever Ray says, the user gets one line
        where = f"at {address}" if address else "on this machine"
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ConfigError(f"cannot start Ray {where}: {lines[0]}") from None
    log.info("Ray ready in %.1f s: %g CPUs", time.perf_counter() - started,
             ray.cluster_resources().get("CPU", 0))
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def quiet_data(ray: Any) -> Iterator[None]:
    """Turns off Ray Data's progress bars and execution notes for the job, then restores."""
    context = ray.data.DataContext.get_current()
    quiet = {"enable_progress_bars": False, "print_on_execution_start": False,
             "enable_auto_log_stats": False}
    saved = {name: getattr(context, name) for name in quiet if hasattr(context, name)}
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    for name in saved:
        setattr(context, name, quiet[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        logger.setLevel(level)
