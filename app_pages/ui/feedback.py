"""How the pages tell the user what happened: errors as sentences (never a traceback), the
safety net every page, fragment and callback runs inside, and the empty state that points elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

import streamlit as st

from tl_core.common import (
    TLStudioError,
    escape_markdown,
    explain_os_error,
    os_error_in,
)

logger = logging.getLogger("tl_studio.app")
Drawing = Callable[..., None]  # a function that draws part of a page


def show_error(error: TLStudioError) -> None:
    """A user-facing error: what went wrong, then what to try (names in it shown as typed)."""
    st.error(escape_markdown(error.message), icon=":material/error:")
    if error.hint:
        st.info(escape_markdown(error.hint), icon=":material/lightbulb:")


def show_unexpected(error: Exception) -> None:
    """A bug or an unforeseen failure: plain words in the browser, the traceback in the log."""
    logger.exception("Unexpected error on a page")
    os_error = os_error_in(error)
    if os_error is not None:  # a full disk or a read-only folder: say so, as the CLI does
        message, hint = explain_os_error(os_error)
        st.error(escape_markdown(message), icon=":material/error:")
        st.info(
            f"{escape_markdown(hint)} Your data and trained runs are safe on disk.",
            icon=":material/lightbulb:",
        )
        return
    st.error(
        f"Something went wrong on this page: {type(error).__name__}: {escape_markdown(error)}",
        icon=":material/error:",
    )
    st.info(
        "Your data and trained runs are safe on disk. Reload the page to try again; the "
        "terminal running TL Studio shows the details.",
        icon=":material/lightbulb:",
    )


@contextlib.contextmanager
def safety_net() -> Iterator[None]:
    """Shows an error raised inside as a sentence, never as a traceback.

    ``st.rerun`` and ``st.stop`` are not Exceptions, so they pass through.
    """
    try:
        yield
    except TLStudioError as error:
        show_error(error)
    except Exception as error:
        show_unexpected(error)


def _guarded(func: Drawing) -> Drawing:
    @functools.wraps(func)  # a fragment's identity comes from the function's name
    def guarded(*args, **kwargs) -> None:
        with safety_net():
            func(*args, **kwargs)

    return guarded


def callback(func: Callable[..., object]) -> Drawing:
    """A widget callback (``on_change``, ``on_click``) behind the app's safety net.

    Streamlit runs a callback before the script and shows an exception raised in it in its
    own error box, with the traceback, in place of the page: app.py's safety net never sees
    it. Every callback of the app is passed through this (tests/test_app_safety.py checks).
    """
    return _guarded(func)


def fragment(run_every: float | None = None) -> Callable[[Drawing], Drawing]:
    """``st.fragment`` behind the app's safety net.

    Streamlit catches an exception raised in a fragment itself (in a full run as in the
    fragment's own reruns) and shows it with its traceback, so ``app.py``'s safety net never
    sees it. Every fragment of the app is made with this decorator.
    """

    def decorate(func: Drawing) -> Drawing:
        return st.fragment(_guarded(func), run_every=run_every)

    return decorate


def empty_state(message: str, page: str, label: str) -> None:
    st.info(message, icon=":material/info:")
    st.page_link(page, label=label, icon=":material/arrow_forward:")
