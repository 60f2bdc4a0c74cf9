"""Finding image files and opening one safely: size caps, EXIF rotation, every mode to RGB,
first frame of animations; anything unusable raises BadImageError with a short reason."""

from __future__ import annotations

import errno
import io
import logging
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semsearch.errors import BadImageError, NotIndexedError

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)


@dataclass(frozen=True)
class ImageFile:
    """A candidate file as found on disk (absolute path, byte size, mtime in ns)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def label(self) -> str:
        return os.path.basename(os.path.dirname(self.path))


def real_path(path: str | os.PathLike[str]) -> str:
    """Gives the path as the catalogue stores it: absolute, with every symbolic link on the
    way resolved. Indexing stores such paths, so every path a person gives (a folder to
    search, list or remove, a query file) goes through here before it is looked up; the
    store compares paths as given and never touches the disk."""
    return os.path.realpath(os.fspath(path))


def folder_class(root: str, path: str) -> str | None:
    """Gives the class of an image in a labeled folder: the name of the sub-folder of root
    it lies in, at any depth (None for a file directly in root)."""
    parts = os.path.relpath(path, root).split(os.sep)
    return parts[0] if len(parts) >= 2 and parts[0] not in ("", os.curdir, os.pardir) else None


def is_supported(path: str | os.PathLike[str]) -> bool:
    """Gives whether the file name has a supported image suffix (any letter case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in SUPPORTED_SUFFIXES


@dataclass
class Scan:
    """What a folder holds: usable image files, and paths that could not be used (with a
    reason). `unreadable` are folders that could not be listed: what the catalogue holds
    below them must not be taken for deleted. `links` are symlinks left alone on purpose
    (with why): a file link into root, whose target is indexed under its own path; file
    links out of root and folder links, which are not followed."""

    files: list[ImageFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _indexed_itself(target: str, root: str) -> bool:
    """Gives whether a file inside root is found by the walk under its own path: an image
    name, in no hidden file or folder."""
    parts = os.path.relpath(target, root).split(os.sep)
    return is_supported(target) and not any(part.startswith(".") for part in parts)


def _add_file(scan: Scan, path: str, root: str) -> None:
    try:
        st = os.stat(path)  # follows a symlink to its target
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            reason = "symlink loop"
        elif os.path.islink(path) and exc.errno == errno.ENOENT:
            reason = "broken symlink"
        else:
            reason = f"cannot stat: {exc.strerror}"
        scan.problems.append((printable(path), reason))
        return
    if not stat.S_ISREG(st.st_mode):
        scan.problems.append((printable(path), "not a regular file"))
        return
    if os.path.islink(path):
        target = real_path(path)
        if not _inside(target, root):
            # Whoever can write in the folder could point it at any picture of this
            # machine, which the server would then show.
            scan.links.append((printable(path), "a link to a file outside the folder, not "
                               "followed (index the folder it points into)"))
            return
        # Its target is indexed under its own path (a second row would duplicate it), or
        # is passed over on purpose; either way the server only shows files, never links.
        reason = ("indexed under its own path" if _indexed_itself(target, root) else
                  "not indexed (hidden, or not named as an image)")
        scan.links.append((printable(path), f"a link to {printable(target)}, which is "
                           f"{reason}"))
        return
    scan.files.append(ImageFile(path, st.st_size, st.st_mtime_ns))


def scan_images(root: str | os.PathLike[str]) -> Scan:
    """Gives the supported image files under root (or root itself if it is a file), sorted,
    skipping hidden files and folders. root is resolved to its real path; folder symlinks are
    not followed (so loops cannot occur), and file links into root are not indexed twice."""
    root_path = real_path(root)
    scan = Scan()
    if not os.path.isdir(root_path):
        if is_supported(root_path):
            _add_file(scan, root_path, os.path.dirname(root_path))
        else:
            scan.problems.append((printable(root_path), "not a supported image file"))
        return scan

    def on_error(exc: OSError) -> None:
        path = str(exc.filename)
        scan.unreadable.append(path)
        scan.problems.append((printable(path), f"cannot list folder: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root_path, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            if os.path.islink(link := os.path.join(dirpath, name)):
                scan.links.append((printable(link), "a link to a folder, not followed "
                                                    "(index the folder it points to)"))
        for name in sorted(filenames):
            if not name.startswith(".") and is_supported(name):
                _add_file(scan, os.path.join(dirpath, name), root_path)
    return scan


def find_images(root: str | os.PathLike[str]) -> Iterator[ImageFile]:
    """Yields the usable image files under root; see scan_images."""
    yield from scan_images(root).files


def printable(path: str) -> str:
    """Gives the path with undecodable bytes of its name shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_unmoved(path: str, what: str) -> None:
    """Raises NotIndexedError unless an indexed path still names a regular file reached through
    no link. Indexing stores real paths, so a link there now (or a folder on the way swapped
    for one) came since, and could point anywhere on the machine."""
    if real_path(path) != path or not os.path.isfile(path):
        raise NotIndexedError(f"{what}'s file is gone or was replaced by a link; index its "
                              "folder again")


def check_name(path: str) -> None:
    """Raises BadImageError if the file name cannot be stored (it is not valid UTF-8)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadImageError(printable(path),
                            "file name is not valid UTF-8; rename the file to use it") from None


def file_byte_cap(max_pixels: int) -> int:
    """Gives the largest file worth reading for an image of at most max_pixels: 8 bytes a
    pixel (16-bit RGBA, uncompressed) plus room for metadata. Anything larger cannot be an
    image that would be decoded, and reading it whole could exhaust memory."""
    return 8 * max_pixels + (64 << 20)


def read_bytes(path: str, max_bytes: int | None = None) -> bytes:
    """Gives a file's bytes or raises BadImageError (missing, unreadable, not a regular
    file, empty, or larger than max_bytes, which is refused without reading it)."""
    try:
        # Non-blocking, so a file swapped for a FIFO since it was found cannot hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadImageError(path, "file disappeared") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot read: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadImageError(path, "is a folder, not a file" if stat.S_ISDIR(st.st_mode)
                            else "not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if max_bytes is not None and st.st_size > max_bytes:
            raise BadImageError(path, f"file is {st.st_size / 2**20:.0f} MiB, larger than any "
                                f"image within max_pixels ({max_bytes / 2**20:.0f} MiB); "
                                "not read")
        limit = max_bytes if max_bytes is not None else -1
        try:
            data = fh.read(st.st_size + 1 if limit >= 0 else -1)
            if 0 <= limit and st.st_size < len(data):  # it grows while being read
                grown = bytearray(data)
                while len(grown) <= limit and (more := fh.read(min(1 << 20,
                                                                   limit + 1 - len(grown)))):
                    grown += more
                data = bytes(grown)
        except OSError as exc:
            raise BadImageError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    if 0 <= limit < len(data):
        raise BadImageError(path, "file grew past the size cap while being read")
    return data


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im, dtype=np.float32) / 257.0
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        im.mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        # Transparent pixels often hold black or garbage; a white page is what people see.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


class OpenedImage(NamedTuple):
    """An upright RGB image, possibly decoded at reduced scale, and the full upright size of
    the picture in the file."""

    image: Image.Image
    width: int
    height: int


# EXIF orientations that turn the picture by 90 or 270 degrees.
_SWAPS_AXES = frozenset({5, 6, 7, 8})


def open_image(
    source: str | bytes,
    *,
    max_pixels: int,
    min_short_side: int | None = None,
    name: str | None = None,
) -> OpenedImage:
    """Gives the image upright and in RGB, decoded at reduced scale when min_short_side
    allows (JPEG DCT scaling), with its full size; or raises BadImageError."""
    label = name or (source if isinstance(source, str) else "<image bytes>")
    data = read_bytes(source, file_byte_cap(max_pixels)) if isinstance(source, str) else source
    if not data:
        raise BadImageError(label, "empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImageError(label, "not an image, or a format that cannot be read") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(label, f"too large to decode safely ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header can raise almost anything
        raise BadImageError(label, f"corrupt header: {exc}") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise BadImageError(label, f"has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise BadImageError(
            label,
            f"{width}x{height} is {width * height / 1e6:.0f} MP, above the cap of "
            f"{max_pixels / 1e6:.0f} MP (setting max_pixels)",
        )
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        if min_short_side and im.format == "JPEG":
            scale = min_short_side / min(width, height)
            if scale < 1:
                im.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        im.load()
    except Exception as exc:  # noqa: BLE001
        raise BadImageError(label, f"truncated or corrupt: {exc}") from None
    try:
        swap = im.getexif().get(0x0112) in _SWAPS_AXES
        upright: Image.Image = ImageOps.exif_transpose(im) or im
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        log.warning("%s: ignoring unreadable EXIF orientation: %s", label, exc)
        swap, upright = False, im
    if swap:
        width, height = height, width
    try:
        return OpenedImage(_to_rgb(upright), width, height)
    except Exception as exc:  # noqa: BLE001
        raise BadImageError(label, f"cannot convert mode {upright.mode} to RGB: {exc}") from None
