"""Decoding image files: one rule for what counts as an image and how it becomes RGB.

Training, the dataset scan, predictions and thumbnails all open images through
:func:`load_image` (or :func:`decode` for bytes already read), so a file that one of them
accepts is read the same way by every other.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tl_core.common import DatasetError

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF"})
"""Pillow format names accepted; detected from the file's content, not its extension."""

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff"}
)
"""Extensions that usually mean an image; used only to interpret folder layouts, never to accept."""

MAX_IMAGE_BYTES = 256 * 1024**2
"""Larger files are not read: no photo needs it, and reading one would fill the memory."""

SKIP_NOT_IMAGE = "not an image"
SKIP_CORRUPT = "truncated or corrupt image"
SKIP_EMPTY = "empty file"
SKIP_NOT_REGULAR = "not a regular file (a pipe, socket or device)"


class UnusableFile(Exception):
    """A file that is not read as an image at all; the message is the reason, in words."""


def open_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> BinaryIO:
    """Opens a file for reading only if it is a regular file of a sensible size.

    A named pipe called ``x.png`` would block a plain ``open`` forever, and a device such as
    ``/dev/zero`` never ends: neither is ever opened for reading. The open itself does not
    block (``O_NONBLOCK``), and the type is checked again on the open descriptor, so a file
    swapped for a pipe in between is caught too.

    Raises:
        UnusableFile: Not a regular file, empty, too large, or unreadable.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # follows links: a link to a pipe is a pipe
            raise UnusableFile(SKIP_NOT_REGULAR)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UnusableFile(f"unreadable: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableFile(SKIP_NOT_REGULAR)
        if info.st_size == 0:
            raise UnusableFile(SKIP_EMPTY)
        if info.st_size > max_bytes:
            raise UnusableFile(
                f"file too large ({info.st_size / 1024**2:,.0f} MB; an image may be at most "
                f"{max_bytes / 1024**2:,.0f} MB)"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _UnsupportedFormat(Exception):
    """Pillow can read the file, but it is not one of SUPPORTED_FORMATS."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith(("I", "F")):
        # Pillow clips 16-bit and float pixels to 0..255 when converting; rescale instead.
        pixels = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            if pixels.size and pixels.max() <= 1.0:
                pixels = pixels * 255.0
        elif img.mode.startswith("I;16") or (pixels.size and pixels.max() > 255):
            pixels = pixels / 257.0
        gray = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def _exif_transpose(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # Malformed EXIF must not make an otherwise good image unreadable.
        return img.copy()


def decode(fp: BinaryIO, draft_size: int | None) -> Image.Image:
    """Decodes fully, applies EXIF orientation, returns an RGB image detached from ``fp``."""
    with Image.open(fp) as img:
        if img.format not in SUPPORTED_FORMATS:
            raise _UnsupportedFormat(img.format or "unknown")
        if draft_size and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        # exif_transpose returns a new image, so the result outlives the closed file.
        return _to_rgb(_exif_transpose(img))


def decode_failure(exc: Exception) -> str:
    """The skip reason for an exception raised while decoding bytes already read."""
    if isinstance(exc, UnidentifiedImageError):
        return SKIP_NOT_IMAGE
    if isinstance(exc, _UnsupportedFormat):
        return f"unsupported image format: {exc}"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large"
    return SKIP_CORRUPT


def load_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Loads an image as RGB, EXIF orientation applied, fully decoded, file closed.

    Args:
        path: Image file in any of ``SUPPORTED_FORMATS``.
        draft_size: For JPEGs only: decode at the smallest DCT scale whose sides both stay at
            least this many pixels, which is much faster for large photos. None decodes at full
            resolution.

    Raises:
        DatasetError: The file cannot be read or is not a supported, intact image.
    """
    path = Path(path)
    hint = "Replace or remove that file, then scan the dataset again."
    try:
        # Reading the bytes first closes the file at once and keeps OS errors apart from
        # decoding errors.
        with open_image_file(path) as file:
            data = file.read()
    except UnusableFile as exc:
        raise DatasetError(f"Could not load image {path.name}: {exc}.", hint=hint) from exc
    except OSError as exc:
        raise DatasetError(
            f"Could not load image {path.name}: unreadable: {exc.strerror or exc}.", hint=hint
        ) from exc
    try:
        return decode(io.BytesIO(data), draft_size)
    except Exception as exc:  # Decoders raise many exception types on malformed data.
        raise DatasetError(
            f"Could not load image {path.name}: {decode_failure(exc)}.", hint=hint
        ) from exc
