"""The image loader under mutated bytes (hypothesis): whatever a file holds, opening it gives
an RGB picture or a BadImageError with a reason, in bounded time; never another exception,
never a hang. The fast profile runs in CI; more examples with HYPOTHESIS_PROFILE=long."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from semsearch.errors import BadImageError
from semsearch.images import open_image

settings.register_profile("fast", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
SECONDS = 5.0  # one small file, however mangled, decodes well within this


def _seed_file(fmt: str) -> bytes:
    rng = np.random.default_rng(len(fmt))
    arr = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {fmt: _seed_file(fmt) for fmt in FORMATS}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid small image of some format with bytes flipped, cut, inserted or repeated."""
    data = bytearray(SEEDS[draw(st.sampled_from(FORMATS))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("flip", "cut", "insert", "repeat", "truncate")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[at:at] = data[at:at + 32] * draw(st.integers(1, 50))
        else:
            data = data[:at]
    return bytes(data)


def _open(data: bytes) -> None:
    started = time.monotonic()
    try:
        opened = open_image(data, max_pixels=4_000_000, min_short_side=64, name="fuzz")
    except BadImageError as exc:
        assert exc.reason  # a reason a person can read
    else:
        assert opened.image.mode == "RGB" and opened.width > 0 and opened.height > 0
        opened.image.load()
    assert time.monotonic() - started < SECONDS


@given(mutated())
def test_mutated_images_open_or_give_a_reason(data: bytes) -> None:
    _open(data)


@given(st.binary(max_size=2048))
def test_random_bytes_open_or_give_a_reason(data: bytes) -> None:
    _open(data)


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (its CRC made right)."""
    data = bytearray(SEEDS["PNG"])
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("width, height", [(60_000, 60_000), (2**31 - 1, 1), (1, 2**31 - 1)])
def test_huge_declared_dimensions_are_refused_before_decoding(width: int, height: int) -> None:
    started = time.monotonic()
    with pytest.raises(BadImageError, match="MP|too large|corrupt|truncated"):
        open_image(_png_claiming(width, height), max_pixels=1_000_000, name="bomb")
    assert time.monotonic() - started < SECONDS
