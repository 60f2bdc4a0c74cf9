"""Safe image loading: every odd mode becomes RGB, bad files raise BadImageError."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import make_image

from semsearch.errors import BadImageError
from semsearch.images import find_images, is_supported, open_image

CAP = 50_000_000


def _open(source: str | bytes, **kw: object) -> Image.Image:
    opened = open_image(source, max_pixels=kw.pop("max_pixels", CAP), **kw)  # type: ignore[arg-type]
    return opened.image


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    fmt = {"CMYK": "JPEG"}.get(mode, "TIFF")
    src = make_image(tmp_path / "rgb.png", seed=1)
    im = Image.open(src)
    if mode == "I;16":
        arr = (np.asarray(im.convert("L"), dtype=np.uint16) * 257)
        converted = Image.fromarray(arr)
        assert converted.mode == "I;16"
    else:
        converted = im.convert(mode)
    path = tmp_path / f"odd.{fmt.lower()}"
    converted.save(path, format=fmt)
    out = _open(str(path))
    assert out.mode == "RGB"
    assert out.size == (64, 48)


def test_sixteen_bit_keeps_its_range(tmp_path: Path) -> None:
    arr = np.full((10, 10), 65535, dtype=np.uint16)
    path = tmp_path / "white16.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(_open(str(path)))
    assert out.min() == 255


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    path = tmp_path / "clear.png"
    im.save(path)
    assert np.asarray(_open(str(path))).min() == 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif)
    assert _open(str(path)).size == (20, 40)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    pixel = _open(str(path)).getpixel((8, 8))
    assert pixel[0] > 200 and pixel[2] < 50


def test_jpeg_draft_decodes_at_reduced_scale_but_gives_the_full_size(tmp_path: Path) -> None:
    path = make_image(tmp_path / "big.jpg", seed=2, size=(2000, 1600))
    opened = open_image(str(path), max_pixels=CAP, min_short_side=256)
    assert 256 <= min(opened.image.size) < 800
    assert (opened.width, opened.height) == (2000, 1600)
    assert _open(str(path)).size == (2000, 1600)


def test_full_size_follows_exif_rotation_under_draft(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "turned.jpg"
    Image.new("RGB", (3000, 2000), (90, 90, 90)).save(path, exif=exif)
    opened = open_image(str(path), max_pixels=CAP, min_short_side=256)
    assert (opened.width, opened.height) == (2000, 3000)
    assert opened.image.size[0] < opened.image.size[1] < 3000


@pytest.mark.parametrize(
    "name, payload, reason",
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", b"this is not an image at all\n" * 10, "not an image"),
        ("random.png", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
         "not an image"),
    ],
)
def test_unusable_bytes_raise_bad_image(tmp_path: Path, name: str, payload: bytes,
                                        reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(BadImageError) as info:
        _open(str(path))
    assert reason in info.value.reason
    assert info.value.path == str(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_files_raise_bad_image(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (200, 300, 3), dtype=np.uint8)
                    ).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError):
        _open(str(path))


def test_pixel_cap_refuses_large_images_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    Image.new("L", (5000, 4000)).save(path)
    with pytest.raises(BadImageError) as info:
        _open(str(path), max_pixels=10_000_000)
    assert "20 MP" in info.value.reason and "max_pixels" in info.value.reason


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    # A 20000x20000 PNG of one colour is a few hundred kB on disk and 1.2 GB decoded.
    path = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(path)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(BadImageError, match="too large"):
        _open(str(path), max_pixels=10**12)


def test_unreadable_file_raises_bad_image() -> None:
    folder = Path(tempfile.mkdtemp(prefix="semsearch-unreadable-"))
    folder.chmod(0o755)
    path = make_image(folder / "secret.png", seed=4)
    path.chmod(0)
    # Root reads any file; as root, check as user nobody for the length of the call.
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(65534)
        with pytest.raises(BadImageError, match="cannot read: Permission denied"):
            _open(str(path))
    finally:
        if as_root:
            os.seteuid(0)
        shutil.rmtree(folder, ignore_errors=True)


def test_path_through_a_file_raises_bad_image(tmp_path: Path) -> None:
    inside = make_image(tmp_path / "a.png", seed=5) / "b.png"
    with pytest.raises(BadImageError, match="cannot read"):
        _open(str(inside))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # A file swapped for a FIFO after the folder was scanned must not hang the open.
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(BadImageError, match="not a regular file"):
        _open(str(tmp_path / "pipe.jpg"))


def test_folder_named_like_an_image_raises_bad_image(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(BadImageError, match="folder"):
        _open(str(tmp_path / "dir.jpg"))


def test_find_images_is_case_insensitive_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.Jpeg", "c.png", "d.WebP", "e.bmp", "f.GIF", "g.tif", "h.TIFF",
                 "notes.txt", ".hidden.jpg", ".cache/x.jpg", "sub/i.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block forever
    found = [Path(f.path).relative_to(tmp_path).as_posix() for f in find_images(tmp_path)]
    assert found == ["a.JPG", "b.Jpeg", "c.png", "d.WebP", "e.bmp", "f.GIF", "g.tif", "h.TIFF",
                     "sub/i.jpg"]
    assert is_supported("X.TiF") and not is_supported("x.svg")


@pytest.mark.parametrize("size", [(60000, 1), (1, 40000), (5000, 3), (224, 224), (300, 200)])
def test_preprocess_handles_any_aspect_ratio(tmp_path: Path, size: tuple[int, int]) -> None:
    from semsearch.models.preprocess import Preprocess

    path = tmp_path / "odd.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    out = Preprocess(224)(_open(str(path)))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert abs(int(out[112, 112, 1]) - 200) <= 2


def test_preprocess_crops_the_centre() -> None:
    from semsearch.models.preprocess import Preprocess

    # A 400x200 image: left and right quarters red, the centre half blue.
    arr = np.zeros((200, 400, 3), np.uint8)
    arr[:, :100, 0] = arr[:, 300:, 0] = 255
    arr[:, 100:300, 2] = 255
    out = Preprocess(32, crop_fraction=0.875)(Image.fromarray(arr))
    # The crop is the centred 175x175 square, inside the blue half.
    assert out[:, :, 2].min() > 240 and out[:, :, 0].max() < 15
