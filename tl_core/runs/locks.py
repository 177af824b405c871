"""Exclusive ownership of a run folder, and whether the process training into it is alive.

The training process creates the folder's lock file exclusively (``O_EXCL``: of two processes
started on the same folder, exactly one succeeds) and holds an OS lock on it (``flock``) while
it trains. The kernel drops that lock when the process ends in any way, ``kill -9`` included,
so a run whose status still says "running" while its lock is free was interrupted.

Where ``fcntl`` is missing (Windows) or the file system has no locks, ownership still holds,
but whether a run is alive cannot be told: :func:`is_locked` says None.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class FolderLock:
    """The lock a training process holds on its run folder; see :meth:`acquire`."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | Path) -> FolderLock | None:
        """Creates and locks ``folder``'s lock file.

        Returns:
            The lock, or None when the lock file exists: another process owns the folder.

        Raises:
            OSError: The lock file cannot be created (permissions, a full disk, ...).
        """
        path = Path(folder) / LOCK_FILE
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        # A file system without locks: the folder is still ours alone, liveness is unknown.
        if fcntl is not None:
            with contextlib.suppress(OSError):
                # Blocking on purpose: a reader in is_locked holds a shared lock for an instant.
                fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):  # the process id is for people, not for the lock
            os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove: bool = False) -> None:
        """Lets go of the lock (closing the file releases it); ``remove`` deletes the file first.

        Deleting while still locked means no reader ever sees an unlocked lock file of a
        folder that is being cleaned up.
        """
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def is_locked(folder: str | Path) -> bool | None:
    """Whether a live process holds ``folder``'s lock.

    Returns:
        True while a process holds it (this one included), False when none does or there is
        no lock file, None when it cannot be told (no ``fcntl``, or a file system without
        locks).
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
