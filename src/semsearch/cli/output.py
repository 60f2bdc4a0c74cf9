"""What the commands print: JSON, progress bars on a terminal, ranked hits, and lists of
records; nothing here decides anything."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from semsearch.query.hits import SearchResult


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_records(as_json: bool, records: Sequence[Any], line: Callable[[Any], str],
                  header: str | None = None) -> int:
    """Prints dataclass records as a JSON list, or one line each (after a header line);
    gives the exit code, 0."""
    if as_json:
        print_json([asdict(record) for record in records])
        return 0
    if header is not None:
        print(header)
    for record in records:
        print(line(record))
    return 0


def print_hits(as_json: bool, result: SearchResult, head: dict[str, Any], title: str, *,
               by_distance: bool = False) -> int:
    """Prints a search's hits as JSON or lines: with the distance and the calibrated score
    for a search by image, with the cosine score for words and focus; gives the exit code."""
    if as_json:
        rows = [{"rank": h.rank, "image_id": h.image_id, "path": h.path, "label": h.label,
                 **({"distance": h.distance} if by_distance else {}), "score": h.score}
                for h in result.hits]
        if by_distance:
            print_json({**head, "hits": rows, "embed_ms": result.embed_ms,
                        "search_ms": result.search_ms})
        else:
            print_json({**head, "hits": rows})
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


class Bar:
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


class StageBars:
    """One Bar per stage of a long job (`progress(stage, done, total)`), each closed when
    the next stage starts."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bars: dict[str, Bar] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self._bars:
            self.close()
            self._bars[stage] = Bar(self._enabled, stage)
        self._bars[stage](done, total)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
