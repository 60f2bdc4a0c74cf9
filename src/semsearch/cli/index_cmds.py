"""`semsearch index`, `info` and `remove`: bring the catalogue up to date with a folder,
say what it holds, forget a folder."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from semsearch.cli import arguments
from semsearch.cli.arguments import chosen, path_argument
from semsearch.cli.output import Bar, print_json
from semsearch.config import Config
from semsearch.images import real_path


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    root = path_argument(args.path)
    with arguments.open_session(config, create=True) as session:
        bar = Bar(not args.quiet, "indexing")
        try:
            report = session.index(root, feature_set=chosen(args, session), progress=bar)
            if args.text:
                from semsearch.query.words import index_text

                index_text(session, root, progress=bar)
        finally:
            bar.close()
    if args.json:
        print_json({**asdict(report), "images_per_second": report.images_per_second})
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


def cmd_info(args: argparse.Namespace, config: Config) -> int:
    with arguments.open_session(config, create=False) as session:
        info = session.info()
    if args.json:
        print_json(asdict(info))
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
    with arguments.open_session(config, create=False) as session:
        removed = session.remove(path_argument(args.path))
    if args.json:
        print_json({"path": real_path(args.path), "removed": removed})
    else:
        print(f"removed {removed} image(s) under {real_path(args.path)}")
    return 0
