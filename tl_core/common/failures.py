"""Exceptions in plain words: what went wrong and what to do about it.

The app's job status, ``metrics.json`` and the command line all explain a failure through
:func:`explain_failure`, so a full disk reads the same everywhere.
"""

from __future__ import annotations

import errno

from tl_core.common.errors import TLStudioError

REPORT_HINT = "Check the settings and the images; if it happens again, report it with this message."

# Errors the file system raises that a user can act on: errno -> (what happened, what to do).
# "{where}" becomes " (path)" when the error names a file.
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: (
        "The disk is full: there was no space left to write{where}.",
        "Free some disk space, or choose a folder on another disk, then try again.",
    ),
    errno.EDQUOT: (
        "Your disk quota is used up: there was no space left to write{where}.",
        "Delete files you no longer need, or ask for a larger quota, then try again.",
    ),
    errno.EROFS: (
        "The disk is read-only: nothing can be written{where}.",
        "Choose a folder on a writable disk.",
    ),
    errno.EACCES: (
        "Permission denied{where}.",
        "Choose a folder you are allowed to write to, or change its permissions.",
    ),
    errno.EPERM: (
        "The operation is not permitted{where}.",
        "Choose a folder you are allowed to write to, or change its permissions.",
    ),
    errno.EISDIR: (
        "A folder is in the way{where}: a file was expected there.",
        "Give a file name, not the name of an existing folder.",
    ),
    errno.ENOTDIR: (
        "A file is in the way{where}: part of that path is a file, not a folder.",
        "Check the path: a folder in it is actually a file.",
    ),
    errno.ENAMETOOLONG: (
        "A file or folder name is too long for the file system{where}.",
        "Use shorter file and folder names.",
    ),
    errno.ENOENT: (
        "A file or folder does not exist{where}.",
        "Check the path; the folder may have been moved or deleted meanwhile.",
    ),
    errno.EIO: (
        "The disk reported an input/output error{where}.",
        "The disk may be failing or was removed: check it, then try again.",
    ),
}


def explain_os_error(exc: OSError) -> tuple[str, str] | None:
    """The sentence and hint for a foreseeable file-system error, or None for any other.

    Args:
        exc: The error; its ``filename`` (when set) is named in the sentence.
    """
    known = _OS_ERRORS.get(exc.errno) if isinstance(exc, OSError) else None
    if known is None:
        return None
    message, hint = known
    where = f" ({exc.filename})" if exc.filename else ""
    return message.format(where=where), hint


def os_error_in(exc: BaseException) -> OSError | None:
    """The first foreseeable file-system error in ``exc`` or the errors that caused it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def explain_failure(exc: BaseException) -> tuple[str, str]:
    """Turns an exception into (what went wrong, what to try), in plain words."""
    if isinstance(exc, TLStudioError):
        return exc.message, exc.hint
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return (
            "The GPU ran out of memory.",
            "Try a smaller batch size or image size, freeze more layer groups, or a smaller "
            "backbone.",
        )
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory.", "Try a smaller batch size or image size."
    os_error = os_error_in(exc)
    if os_error is not None:
        return explain_os_error(os_error)
    return f"Training failed: {type(exc).__name__}: {exc}", REPORT_HINT
