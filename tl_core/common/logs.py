"""Logging for the command line and the app, set up once by each: one line per warning.

The engine logs the conditions it handles (an unreadable feature cache, a cache folder it
cannot write, weights it could not save) with ``logger.warning(..., exc_info=True)``. With no
logging set up, Python's last-resort handler prints the whole traceback after each warning;
here a warning is one line, ending with its cause in words. The traceback shows only when asked
for: ``--debug`` on the command line, or ``TL_STUDIO_DEBUG=1`` for either. The app's server
also keeps the traceback of an error (a page's unexpected failure): its terminal is its log, and
a bug report needs it, while the browser only ever shows a sentence.
"""

from __future__ import annotations

import logging
import os
import sys

from tl_core.common.failures import explain_os_error, os_error_in
from tl_core.common.text import shorten

DEBUG_ENV = "TL_STUDIO_DEBUG"  # "1": tracebacks and the engine's info messages, as --debug
MAX_CAUSE_CHARS = 300  # a cause longer than this is cut: the line is a warning, not a dump


def debug_asked(debug: bool = False) -> bool:
    """Whether tracebacks were asked for: ``debug`` (``--debug``), or ``TL_STUDIO_DEBUG=1``."""
    return debug or os.environ.get(DEBUG_ENV, "") == "1"


def setup_logging(debug: bool = False, *, error_tracebacks: bool = False) -> None:
    """Sends log records to stderr, one line each; safe to call again (the app does, on every
    rerun): it replaces its own handler and leaves any other alone.

    Args:
        debug: Show every record's traceback, and the engine's info messages.
        error_tracebacks: Show the traceback of records at ERROR and above (the app's server).
    """
    debug = debug_asked(debug)
    traceback_level = logging.NOTSET if debug else logging.ERROR if error_tracebacks else None
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, OneLineHandler):
            if handler.traceback_level == traceback_level:
                return
            root.removeHandler(handler)
    handler = OneLineHandler(traceback_level)
    handler.setLevel(logging.INFO if debug else logging.WARNING)
    root.addHandler(handler)
    logging.getLogger("tl_core").setLevel(logging.INFO if debug else logging.NOTSET)


class OneLineHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test may capture it), one line per
    record: "warning: <message> (<cause>)", with the traceback from ``traceback_level`` up.

    Args:
        traceback_level: The lowest level whose records show their traceback (None: none do).
    """

    def __init__(self, traceback_level: int | None):
        super().__init__()
        self.traceback_level = traceback_level

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # always the current stderr

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return line
        if self.traceback_level is not None and record.levelno >= self.traceback_level:
            return f"{line}\n{logging.Formatter().formatException(record.exc_info)}"
        return f"{line} ({cause_in_words(error)})"


def cause_in_words(error: BaseException) -> str:
    """What an exception says, on one line: a file-system error as a sentence (a full disk,
    a read-only folder), anything else as its type and first line."""
    os_error = os_error_in(error)
    if os_error is not None:
        explained = explain_os_error(os_error)
        if explained is not None:
            return explained[0].rstrip(".")
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return shorten(
        f"{type(error).__name__}: {first}" if first else type(error).__name__, MAX_CAUSE_CHARS
    )
