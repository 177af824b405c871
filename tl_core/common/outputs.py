"""Checks that an output path can be written, done before any slow work starts.

A run folder in a read-only place, or an export file named like an existing folder, should
fail in a second with a sentence, not after the data is scanned and the model built.
"""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

from tl_core.common.errors import TLStudioError
from tl_core.common.failures import explain_os_error


def _sentences(check):
    """Turns the file system's own errors while checking (a name too long to even look up)
    into the same sentences as the checks'."""

    @functools.wraps(check)
    def checked(path: str | Path) -> Path:
        try:
            return check(path)
        except OSError as exc:
            explained = explain_os_error(exc)
            if explained is None:
                raise
            raise TLStudioError(*explained) from None

    return checked


def _refuse(code: int, path: Path) -> TLStudioError:
    message, hint = explain_os_error(OSError(code, os.strerror(code), str(path)))
    return TLStudioError(message, hint)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not every platform or file system says
        return 255


def _check_creatable(path: Path) -> None:
    """Checks that ``path`` (missing) could be created, with any missing parent folders."""
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise _refuse(errno.ENOTDIR, existing)
    limit = _name_max(existing)
    for part in path.relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise _refuse(errno.ENAMETOOLONG, path)
    _check_writable(existing)


def _check_writable(folder: Path) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    raise _refuse(errno.EROFS if read_only else errno.EACCES, folder)


@_sentences
def check_output_folder(path: str | Path) -> Path:
    """Checks that a folder can be created at ``path``, or written if it exists.

    Raises:
        TLStudioError: A file is in the way, a name is too long, or the place is read-only or
            not writable by this user.
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        _check_writable(path)
    elif path.exists() or path.is_symlink():
        raise TLStudioError(
            f"{path} is a file, not a folder.", "Give the name of a new folder instead."
        )
    else:
        _check_creatable(path)
    return path


@_sentences
def check_output_file(path: str | Path) -> Path:
    """Checks that a file can be written at ``path`` (replacing a file already there).

    Raises:
        TLStudioError: ``path`` is a folder, or its folder cannot be created or written.
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise TLStudioError(
            f"{path} is a folder; a file name is needed here.",
            "Give the name of a file to write (it may lie inside that folder).",
        )
    if path.exists():
        _check_writable(path.parent)
    else:
        _check_creatable(path)
    return path
