"""The Data page's readiness check: what ``tl-studio check`` says before training, in the page.

The scan's own errors and warnings are shown by the health report; this adds what only the
split tells (its sizes, validation images with a copy in training, a split that cannot be
made), judged with the session's validation share and seed, as training will split.
"""

from __future__ import annotations

import streamlit as st

from app_pages.ui import state
from tl_core.analysis import check_health
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.config import TrainConfig
from tl_core.data import DatasetReport


def _split_settings(dataset: str) -> TrainConfig:
    # Settings saved on the Model page decide the split; before any, the defaults do.
    try:
        return state.train_config(dataset)
    except TLStudioError:
        return TrainConfig(data=dataset)


def readiness(dataset: str, report: DatasetReport) -> None:
    """Says whether the dataset can train and how it will be split, as the CLI's check does."""
    config = _split_settings(dataset)
    health = check_health(report, None, config.val_fraction, config.seed)
    if health.can_train:
        st.success(
            f"Ready to train: {plural(report.num_images, 'image')} in "
            f"{plural(len(report.class_names), 'tag' if report.multi_label else 'class')}. "
            f"{health.split_sentence()}",
            icon=":material/check_circle:",
        )
        st.page_link(
            state.MODEL_PAGE, label="Next: choose a model", icon=":material/arrow_forward:"
        )
    elif report.can_train:  # the scan passed, but the split cannot be made
        st.error(
            "Cannot train on this dataset yet: "
            + " ".join(escape_markdown(problem) for problem in health.problems),
            icon=":material/block:",
        )
    if sentence := health.leakage_sentence():
        st.info(escape_markdown(sentence), icon=":material/content_copy:")
    for issue in health.warnings:
        if issue not in report.warnings:  # the health report below shows the scan's own
            st.warning(escape_markdown(issue.message), icon=":material/warning:")
