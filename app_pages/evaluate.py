"""Evaluate: where a run is right and wrong, down to the images, on its validation images or
on a separate labelled test set."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from app_pages.panels import cell_review, decisions, tag_results
from app_pages.ui import dataset_view, feedback, inputs, run_picker, state
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.data import load_image
from tl_core.figures import (
    confusion_cell_from_selection,
    confusion_figure,
    per_class_figure,
    reliability_figure,
)
from tl_core.inference import Evaluation, MultiLabelEvaluation, Predictor, evaluate_run
from tl_core.runs import WEIGHTS_FILE, folder_signature, load_run

st.title("Evaluate")
CELL_KEY, TRUE_KEY, PRED_KEY, CHART_KEY = "eval_cell", "eval_true", "eval_pred", "confusion"
TEST_KEY, SCOPE_KEY = "eval_test_set", "eval_scope"
VALIDATION, TEST = "Validation images", "A labelled test set"


@st.cache_data(max_entries=4, show_spinner=False)
def evaluate(
    run_path: str, weights_mtime: int, data: str | None, signature: tuple
) -> Evaluation | MultiLabelEvaluation:
    del weights_mtime, signature  # cache keys only: new weights or new images, new evaluation
    return evaluate_run(run_path, data)


@st.cache_data(max_entries=4, show_spinner="Working out where the model looked...")
def saliency_overlays(
    run_path: str, weights_mtime: int, images: tuple[str, ...], labels: tuple[str, ...]
) -> list[Image.Image]:
    """Grad-CAM overlays of ``images``, each for its class in ``labels``."""
    del weights_mtime  # cache key only
    model = Predictor.from_run(run_path)
    return [
        model.explain(load_image(path), label)[0]
        for path, label in zip(images, labels, strict=True)
    ]


def choose_test_set(layout: str) -> str | None:
    """A form for a labelled test folder or .zip; the chosen folder stays for the session."""
    with st.form("test_set"):
        archive = inputs.file_uploader(
            f"A .zip with {layout}", inputs.ARCHIVE_UPLOAD_MB, type=["zip"]
        )
        folder_text = inputs.folder_input(f"/path/to/test_set ({layout})")
        if st.form_submit_button("Evaluate on this set", type="primary"):
            try:
                st.session_state[TEST_KEY] = str(inputs.folder_from_form(archive, folder_text))
            except TLStudioError as error:
                feedback.show_error(error)
    return st.session_state.get(TEST_KEY)


decisions.show_notice(state.TRAIN_PAGE, "Next: train on the new version")
summary = run_picker.require_run()
weights_mtime = (summary.path / WEIGHTS_FILE).stat().st_mtime_ns
source = st.radio("Evaluate on", [VALIDATION, TEST], horizontal=True)
tagged = load_run(summary.path).multi_label  # its test set has a labels.csv of tags
layout = "a labels.csv of tags" if tagged else "one folder per class"
data = choose_test_set(layout) if source == TEST else None
if source == TEST and not data:
    st.info(
        "Images the model never saw, with a labels.csv of the run's tags."
        if tagged
        else "Images the model never saw, in one folder per class named as the run's classes."
    )
    st.stop()
noun = "test" if data else "validation"
# A cell picked for one run or image set means nothing for another: start afresh.
state.forget_on_change(
    SCOPE_KEY, f"{summary.path}|{data}", [CELL_KEY, TRUE_KEY, PRED_KEY, CHART_KEY]
)
try:
    with st.spinner(f"Evaluating on the {noun} images..."):
        signature = folder_signature(data) if data else ()
        result = evaluate(str(summary.path), weights_mtime, data, signature)
except TLStudioError as error:
    feedback.show_error(error)
    st.stop()
if isinstance(result, MultiLabelEvaluation):  # a run that gives several tags per image
    tag_results.multi_label_view(summary.path, result, noun)
    st.stop()

labels = result.labels
low, high = result.interval
cols = st.columns(4)
cols[0].metric(f"{noun.capitalize()} accuracy", f"{result.accuracy:.1%}")
cols[1].metric("95 % interval", f"{low:.0%}–{high:.0%}")
cols[2].metric(f"{noun.capitalize()} images", result.num_images)
cols[3].metric("Wrong", result.num_wrong)
st.caption(
    f"{result.accuracy_text}: on new images like these, the true accuracy most likely lies "
    "in the interval. Fewer images make it wider."
)

# The picked cell: a click on the matrix pre-fills the two selectboxes, which also work alone.
if st.session_state.get(TRUE_KEY) not in labels or st.session_state.get(PRED_KEY) not in labels:
    st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = result.default_cell()
matrix_col, cell_col = st.columns([3, 2])
with matrix_col:
    event = st.plotly_chart(
        confusion_figure(result.confusion),
        key=CHART_KEY,
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},  # its zoom tools would only get in the way of clicks
    )
cell = confusion_cell_from_selection(event.selection if event else None)
if cell and cell != st.session_state.get(CELL_KEY) and set(cell) <= set(labels):
    st.session_state[CELL_KEY] = cell
    st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = cell
with cell_col:
    true_label = st.selectbox("True class", labels, key=TRUE_KEY)
    predicted_label = st.selectbox("Predicted class", labels, key=PRED_KEY)
    rows = result.cell_images(true_label, predicted_label)
    st.markdown(
        f"**{plural(len(rows), 'image')}** of *{escape_markdown(true_label)}* predicted as "
        f"*{escape_markdown(predicted_label)}*"
    )
    if data is None:  # the run's own validation images: fixable in its dataset
        cell_review.cell_review(summary.path, rows, predicted_label)
    else:
        dataset_view.image_grid(list(rows.image[:24]), [f"{c:.0%}" for c in rows.confidence[:24]])

st.subheader("Per class")
st.plotly_chart(per_class_figure(result.per_class), key="per_class")
st.dataframe(
    result.per_class,
    hide_index=True,
    column_config={
        name: st.column_config.NumberColumn(format="percent")
        for name in ("precision", "recall", "f1")
    },
)

if result.calibration is not None:
    st.subheader("How far to trust the percentages")
    st.caption(
        "Each point is a group of images the model gave a similar top percentage: on the "
        "diagonal, the percentage is how often it is right; below it, the model is "
        "overconfident. The app shows the calibrated percentages."
    )
    st.plotly_chart(reliability_figure(result.calibration), key="reliability")
    st.caption(escape_markdown(result.calibration.text))

st.subheader("Most wrong")
review = result.most_wrong(12)
if review.empty:
    st.success(f"No {noun} image is wrong.", icon=":material/check_circle:")
    review = result.least_confident_correct(12)
    st.caption(f"Instead, the correct {noun} images the model was least sure of:")
else:
    st.caption(
        f"The {noun} images the model got wrong, highest loss first: often mislabelled or "
        "unusual images."
    )
captions = [
    f"true {t} · predicted {p} ({c:.0%})"
    for t, p, c in zip(review.true_label, review.predicted_label, review.confidence, strict=True)
]
if st.toggle(
    "Show where the model looked",
    help="A saliency map (Grad-CAM) for the predicted class on the model's (cropped) view.",
):
    try:
        overlays = saliency_overlays(
            str(summary.path), weights_mtime, tuple(review.image), tuple(review.predicted_label)
        )
        st.image(overlays, caption=[escape_markdown(c) for c in captions], width=128)
    except TLStudioError as error:
        feedback.show_error(error)
else:
    dataset_view.image_grid(list(review.image), captions, size=128)
