"""SQL pieces both halves of the Store use."""

from __future__ import annotations

import os

PUT_VECTOR = ("INSERT INTO vectors(feature_set_id, image_id, vector) VALUES (?, ?, ?)"
              " ON CONFLICT(feature_set_id, image_id) DO UPDATE SET vector = excluded.vector")


def prefix_bounds(root: str) -> tuple[str, str]:
    """Gives the bounds (low inclusive, high exclusive) of the paths strictly below root, for
    a range query on an indexed column."""
    prefix = root.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)
