"""The Evaluate page's view of a multi-label run: its scores over tags, each tag's precision,
recall, F1 and average precision with their counts, the per-tag thresholds (editable), which
tags were missed or added on which images (fixable in the run's dataset when they are its
validation images), and the most wrong images.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.panels import retag
from app_pages.ui import dataset_view, feedback
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.data import image_keys, split_tags
from tl_core.inference import (
    MultiLabelEvaluation,
    read_thresholds,
    set_thresholds,
    threshold_record,
)
from tl_core.runs import run_dataset

SCOPE = "evaluate_tags"  # the missed/added gallery's pickers and save button
MISSED, ADDED = "Missed: carries the tag, not given it", "Added: given the tag, does not carry it"
MAX_SHOWN = 24
SAVE_THRESHOLDS = "Save thresholds"
HOW_TO_READ = (
    "A tag is given to an image when its probability is at or above the tag's threshold. "
    "Lower a threshold and the tag is missed on fewer images that carry it (higher recall) but "
    "added to more that do not (lower precision); raise it for the opposite. Predict and every "
    "export use these thresholds."
)
PERCENT = st.column_config.NumberColumn(format="percent")


def with_current_thresholds(run_path: Path, result: MultiLabelEvaluation) -> MultiLabelEvaluation:
    """The evaluation read at the thresholds the run holds now (they may have been edited
    since the probabilities were computed; nothing needs computing again)."""
    return dataclasses.replace(result, thresholds=read_thresholds(run_path))


def summary_metrics(result: MultiLabelEvaluation, noun: str) -> None:
    mean_ap = result.mean_average_precision
    cols = st.columns(4)
    cols[0].metric(f"{noun.capitalize()} macro F1", f"{result.macro_f1:.1%}")
    cols[1].metric("Mean average precision", "–" if math.isnan(mean_ap) else f"{mean_ap:.1%}")
    cols[2].metric("All tags right", f"{result.exact_match:.1%}")
    cols[3].metric(f"{noun.capitalize()} images", result.num_images)
    st.caption(
        f"Macro F1 is the mean of the tags' F1 at their thresholds; average precision scores "
        f"each tag's ranking of the images whatever the threshold; 'all tags right' is the share "
        f"of the {plural(result.num_images, noun + ' image')} whose whole set of tags is right."
    )


def per_tag_table(result: MultiLabelEvaluation) -> None:
    st.subheader("Per tag")
    st.caption(
        "Support: images that carry the tag; predicted: images given it; missed and added: the "
        "two kinds of mistake. Few images of a tag make its numbers unsteady."
    )
    frame = result.per_tag
    st.dataframe(
        frame[
            [
                "tag",
                "threshold",
                "precision",
                "recall",
                "f1",
                "average_precision",
                "support",
                "predicted",
                "missed",
                "added",
            ]
        ],  # fmt: skip
        hide_index=True,
        key="per_tag_scores",
        column_config={
            "threshold": st.column_config.NumberColumn(format="%.2f"),
            **{name: PERCENT for name in ("precision", "recall", "f1", "average_precision")},
        },
    )


def threshold_editor(run_path: Path, tags: list[str]) -> None:
    """Each tag's threshold in a number field; the save button writes the changed ones."""
    st.subheader("Thresholds")
    record = threshold_record(run_path)
    st.caption(f"{HOW_TO_READ} Now: {escape_markdown(record['source'])}.")
    # Shown to two decimals, within the field's range; only the fields the user moved are saved.
    shown = {tag: min(max(round(t, 2), 0.01), 0.99) for tag, t in record["thresholds"].items()}
    with st.form(f"thresholds:{run_path}"):
        cols = st.columns(min(len(tags), 4))
        values = {
            tag: cols[index % len(cols)].number_input(
                tag,
                min_value=0.01,
                max_value=0.99,
                value=shown[tag],
                step=0.05,
                format="%.2f",
                key=f"threshold:{run_path}:{tag}",
            )
            for index, tag in enumerate(tags)
        }
        if st.form_submit_button(SAVE_THRESHOLDS, icon=":material/save:"):
            changes = {
                tag: float(value) for tag, value in values.items() if abs(value - shown[tag]) > 1e-9
            }
            if not changes:
                st.caption("No threshold changed: nothing to save.")
            else:
                try:
                    set_thresholds(run_path, changes)
                except TLStudioError as error:
                    feedback.show_error(error)
                    return
                st.rerun()  # every number on the page follows the new thresholds


def confusion_table(result: MultiLabelEvaluation) -> None:
    st.subheader("Missed and added tags")
    st.caption(
        "Rows: a tag the images carry; columns: a tag the model gave them. The diagonal counts "
        "the tags found; a large cell off it is a pair the model gives together. Pick a tag "
        "below to see its images."
    )
    st.dataframe(result.tag_confusion(), key="tag_confusion")


def _fixable(run_path: Path, rows: pd.DataFrame) -> tuple[str, dict[str, str]] | None:
    """The run's dataset and the images' keys in it, or None (shown why) when the dataset
    cannot take a new version."""
    try:
        report = dataset_view.scan(run_dataset(run_path))
        return str(report.root), image_keys(report.root, [str(i) for i in rows.image])
    except TLStudioError as error:
        st.caption(f"These images cannot be fixed from here: {escape_markdown(error.message)}")
        return None


def tag_errors(run_path: Path, result: MultiLabelEvaluation, validation: bool) -> None:
    """One tag's missed or added images; on the validation images, with their tags to fix."""
    left, right = st.columns([1, 2])
    tag = left.selectbox("Tag", result.tags, key=f"eval_tag:{run_path}")
    kind = right.radio("Mistake", [MISSED, ADDED], horizontal=True, key=f"eval_kind:{run_path}")
    rows = (result.missed_images if kind == MISSED else result.added_images)(tag)
    st.markdown(f"**{plural(len(rows), 'image')}** {kind.split(':')[0].lower()} *{tag}*")
    rows = rows.head(MAX_SHOWN)
    if rows.empty:
        return
    captions = [
        f"{tag} {p:.0%} · tags: {t or 'none'}"
        for p, t in zip(rows.probability, rows.true_tags, strict=True)
    ]
    fixable = _fixable(run_path, rows) if validation else None
    if fixable is None:
        dataset_view.image_grid(list(rows.image), captions)
        return
    dataset, keys = fixable
    images = [
        retag.TaggedImage(keys[str(image)], str(image), split_tags(t), escape_markdown(c))
        for image, t, c in zip(rows.image, rows.true_tags, captions, strict=True)
    ]
    changes = retag.gallery(SCOPE, dataset, images, result.tags)
    st.caption("Changed tags make a new version of the dataset this run trained on.")
    retag.save_button(SCOPE, dataset, changes)


def most_wrong(result: MultiLabelEvaluation, noun: str) -> None:
    st.subheader("Most wrong")
    review = result.most_wrong(12)
    if review.empty:
        st.success(f"Every {noun} image has all its tags right.", icon=":material/check_circle:")
        return
    st.caption(f"The {noun} images with a wrong tag, highest loss first.")
    captions = [
        "missed " + (m or "nothing") + " · added " + (a or "nothing")
        for m, a in zip(review.missed, review.added, strict=True)
    ]
    dataset_view.image_grid(list(review.image), captions, size=128)


def multi_label_view(run_path: Path, result: MultiLabelEvaluation, noun: str) -> None:
    """The whole multi-label Evaluate view, at the run's current thresholds."""
    result = with_current_thresholds(run_path, result)
    summary_metrics(result, noun)
    per_tag_table(result)
    threshold_editor(run_path, result.tags)
    confusion_table(result)
    tag_errors(run_path, result, validation=noun == "validation")
    most_wrong(result, noun)
