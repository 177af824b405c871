"""Small file helpers every package uses: atomic writes and safe, unique names.

A file written through ``atomic_write`` is either the old one or the whole new one after a crash,
never half of it. Names made from user text stay inside their folder on every platform.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

# File systems allow 255 bytes per name. Names made here stay well below, so that what is
# added to them later ("-12" for uniqueness, "predictions-....csv") still fits.
MAX_NAME_BYTES = 200
# A cut name ends with a hash of the whole name, so two long names never become one.
_NAME_HASH_CHARS = 8


def atomic_write(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames it into place.

    A crash mid-write leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_frame_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def safe_name(text: str, fallback: str = "item") -> str:
    """Turns user text into a file or folder name that is safe on every platform.

    Letters, digits, spaces, dots, dashes and underscores survive; anything else (path
    separators included) becomes an underscore, so a name can never climb out of its folder.
    A name longer than ``MAX_NAME_BYTES`` (in UTF-8) is cut, keeping its extension and
    ending in a hash of the whole name, so distinct long names stay distinct.
    """
    name = re.sub(r"[^\w .-]+", "_", text.strip()).strip(" .")
    return cap_name(name or fallback)


def cap_name(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` if it fits in ``max_bytes`` of UTF-8, else cut to fit as ``safe_name`` says."""
    if len(name.encode()) <= max_bytes:
        return name
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode()) > 16:  # not an extension, just a dot in a long name
        stem, suffix = name, ""
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:_NAME_HASH_CHARS]
    budget = max_bytes - len(suffix.encode()) - len(tag)
    # Cut on bytes, dropping a character split in two, so the name stays valid UTF-8.
    kept = stem.encode()[:budget].decode("utf-8", errors="ignore").rstrip(" .")
    return f"{kept}{tag}{suffix}"


def unique_path(folder: str | Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-1.ext``, ``stem-2.ext``... if that name is taken."""
    folder = Path(folder)
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    counter = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return candidate
