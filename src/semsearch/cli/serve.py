"""`semsearch serve`: ConvNet Playground (the web page and its JSON API) on one catalogue,
indexing a folder first if given."""

from __future__ import annotations

import argparse
import socket

from semsearch.cli import arguments
from semsearch.cli.arguments import chosen as _chosen
from semsearch.cli.arguments import path_argument as _path_argument
from semsearch.cli.output import Bar as _Bar
from semsearch.config import Config
from semsearch.errors import ConfigError


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    import uvicorn

    from semsearch.web.app import create_app
    from semsearch.web.routes.explore import prerender
    from semsearch.web.security import serving

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, not {args.port}")
    _check_listen(config.host, args.port)  # before indexing, and before printing an address
    with arguments.open_session(config, create=True) as session:
        served = None
        if args.path is not None:
            bar = _Bar(not args.quiet, "indexing")
            try:
                report = session.index(_path_argument(args.path),
                                       feature_set=_chosen(args, session), progress=bar)
            finally:
                bar.close()
            served = report.root
            print(f"{report.root}: {report.found} images ({report.embedded} embedded, "
                  f"{len(report.failed)} skipped)")
        plan = serving(config, args.port)
        app = create_app(plan.config, session=session, allowed_hosts=plan.allowed_hosts,
                         default_collection=served)
        prerender(app)  # the explorer's tiles, at the lowest priority while nothing is asked
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
