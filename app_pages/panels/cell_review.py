"""The Evaluate page's fix for a confusion-matrix cell: its validation images, each with a
decision (relabel as the predicted class first, exclude, keep), saved as a new version of the
dataset the run trained on, which becomes the current dataset for the next training.

A run's validation images are files of the dataset it trained on (its config.json's ``data``,
perhaps itself a version); each is mapped back to its original image, so the new version is
the next one of the same original and keeps the decisions of the version the run used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.panels import decisions as decisions_panel
from app_pages.ui import dataset_view
from tl_core.common import TLStudioError, escape_markdown
from tl_core.data import image_keys
from tl_core.runs import run_dataset

SCOPE = "evaluate"  # this gallery's choices and save button (see _decisions)
MAX_SHOWN = 24


def cell_review(run_path: Path, rows: pd.DataFrame, predicted_label: str) -> None:
    """The cell's images with a decision each and the save button; when the run's dataset
    cannot take a new version, the plain images and the reason."""
    rows = rows.head(MAX_SHOWN)
    images = [str(image) for image in rows.image]
    try:
        report = dataset_view.scan(run_dataset(run_path))
        keys = image_keys(report.root, images)
    except TLStudioError as error:
        dataset_view.image_grid(images, [f"{c:.0%}" for c in rows.confidence])
        st.caption(f"These images cannot be fixed from here: {escape_markdown(error.message)}")
        if error.hint:
            st.caption(escape_markdown(error.hint))
        return
    candidates = [
        decisions_panel.Candidate(
            key=keys[image],
            path=image,
            label=true_label,
            caption=f"{escape_markdown(keys[image])} · {confidence:.0%}",
            suggested=predicted_label,
        )
        for image, true_label, confidence in zip(
            images, rows.true_label, rows.confidence, strict=True
        )
    ]
    dataset = str(report.root)
    decisions = decisions_panel.gallery(SCOPE, dataset, candidates, report.class_names)
    st.caption(
        "Decisions make a new version of the dataset this run trained on; your files are "
        "never changed."
    )
    decisions_panel.save_button(SCOPE, dataset, report.root, report.class_names, decisions)
