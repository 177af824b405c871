"""Where a transfer tool does not work on a multi-label dataset yet, the page says so in the
engine's own sentence (``multi_label_refusal``) instead of offering a button that would fail."""

from __future__ import annotations

import streamlit as st

from tl_core.analysis import multi_label_refusal
from tl_core.common import escape_markdown


def refusals(*tools: str) -> None:
    """One note per tool that refuses a dataset with several tags per image."""
    for tool in tools:
        if sentence := multi_label_refusal(tool):
            st.info(
                escape_markdown(sentence) + " Training, evaluation with per-tag scores, "
                "prediction and export all handle several tags per image.",
                icon=":material/info:",
            )
