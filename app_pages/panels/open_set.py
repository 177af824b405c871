"""The Predict page's "not one of my classes" controls and answers.

The run keeps how unlike its training images an image may be before it is answered "Not one of
my classes" (tl_core.inference.open_set). Here the user can move that line, seeing what it costs
in the run's own validation images, and every answer shows it.
"""

from __future__ import annotations

import streamlit as st

from tl_core.common import escape_markdown
from tl_core.inference import ImagePrediction, Predictor, answer_text, domain_shift_summary

ACCEPTANCE_KEY = "predict_acceptance"


def threshold_control(model: Predictor) -> float | None:
    """A slider for how strict the rejection is; returns the threshold (None: the run's own,
    or a run that cannot tell). Says whether the probabilities are calibrated, or for a run that
    gives several tags per image, from which probability each tag is given."""
    st.caption(
        escape_markdown(thresholds_text(model) if model.multi_label else model.calibration.text)
    )
    open_set = model.open_set
    if open_set is None:
        st.caption(escape_markdown(domain_shift_summary([], checked=False).text))
        return None
    acceptance = st.slider(
        "Share of images of your classes to accept",
        min_value=80,
        max_value=100,
        value=round(open_set.acceptance * 100),
        format="%d %%",
        key=ACCEPTANCE_KEY,
        help="Images less like your training images than this share of them are answered "
        '"Not one of my classes" instead of with a class. Higher accepts more unfamiliar '
        "images; lower turns away more of your own.",
    )
    threshold = open_set.threshold_for(acceptance / 100)
    cost = open_set.cost(threshold, validation_only=True)
    st.caption(f"On this run's validation images: {escape_markdown(cost.text)}.")
    return threshold


def thresholds_text(model: Predictor) -> str:
    """A multi-label run's thresholds in a sentence: "Each tag is given from its threshold on
    (set on the Evaluate page): circle 0.42, square 0.55."."""
    pairs = ", ".join(
        f"{tag} {t:.2f}" for tag, t in zip(model.labels, model.thresholds or (), strict=True)
    )
    return (
        "Each image gets every tag whose probability reaches the tag's threshold, or no tag "
        f"(the thresholds are set on the Evaluate page): {pairs}."
    )


def show_answer(result: ImagePrediction, where) -> None:
    """The image's answer in words; a warning for an image unlike the training images."""
    text = escape_markdown(answer_text(result))
    if result.unknown:
        where.warning(text, icon=":material/help:")
    else:
        where.markdown(f"**{text}**")


def show_summary(results: list[ImagePrediction], checked: bool) -> None:
    """For several images: how many look unlike the training images (listed first below)."""
    summary = domain_shift_summary(results, checked)
    if summary.unknown:
        st.warning(escape_markdown(summary.text), icon=":material/warning:")
    elif checked:
        st.caption(escape_markdown(summary.text))
