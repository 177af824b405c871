"""Driving the real app.py headlessly with Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(page: str, **state) -> AppTest:
    """Runs the app on ``page`` with ``state`` already in the session."""
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in [*at.button, *at.form_submit_button] if b.label == label)


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)
