"""Small JPEG previews of indexed images, made with the safe image loader and cached on disk
by content hash and size."""

from __future__ import annotations

import io
import os
from pathlib import Path

from semsearch.atomic import write_bytes_atomically
from semsearch.errors import NotIndexedError
from semsearch.images import open_image
from semsearch.store import ImageRecord

SIZES = (64, 128, 160, 256, 512)


def thumbnail(record: ImageRecord, size: int, cache_dir: Path,
              max_pixels: int = 120_000_000) -> bytes:
    """Gives a JPEG of the image fitted in size x size (one of SIZES), from the cache when
    the file is unchanged since indexing."""
    if size not in SIZES:
        raise ValueError(f"thumbnail size must be one of {', '.join(map(str, SIZES))}")
    if not os.path.isfile(record.path):
        raise NotIndexedError(f"image {record.id}'s file is gone")
    stat = os.stat(record.path)
    unchanged = stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns
    cached = cache_dir / "thumbnails" / f"{record.sha256}-{size}.jpg"
    if unchanged and cached.is_file():
        return cached.read_bytes()
    opened = open_image(record.path, max_pixels=max_pixels, min_short_side=size)
    image = opened.image.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    data = buffer.getvalue()
    if unchanged:
        write_bytes_atomically(cached, data)
    return data
