"""Evaluate: where a run is right and wrong, down to the images."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from app_pages import _ui
from tl_core.errors import TLStudioError
from tl_core.evaluation import Evaluation, evaluate_run
from tl_core.figures import confusion_cell_from_selection, confusion_figure, per_class_figure
from tl_core.images import load_image
from tl_core.predict import Predictor
from tl_core.runs import WEIGHTS_FILE

st.title("Evaluate")
CELL_KEY, TRUE_KEY, PRED_KEY = "eval_cell", "eval_true", "eval_pred"


@st.cache_data(max_entries=4, show_spinner="Evaluating on the validation images...")
def evaluate(run_path: str, weights_mtime: int) -> Evaluation:
    del weights_mtime  # cache key only: new weights in the same folder mean a new evaluation
    return evaluate_run(run_path)


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


summary = _ui.require_run()
weights_mtime = (summary.path / WEIGHTS_FILE).stat().st_mtime_ns
try:
    result = evaluate(str(summary.path), weights_mtime)
except TLStudioError as error:
    _ui.show_error(error)
    st.stop()

labels = result.labels
cols = st.columns(3)
cols[0].metric("Validation accuracy", f"{result.accuracy:.1%}")
cols[1].metric("Validation images", len(result.predictions))
cols[2].metric("Wrong", int((~result.predictions.correct).sum()))

# The picked cell: a click on the matrix pre-fills the two selectboxes, which also work alone.
if st.session_state.get(TRUE_KEY) not in labels or st.session_state.get(PRED_KEY) not in labels:
    confused = result.most_confused()
    first = tuple(confused.iloc[0, :2]) if len(confused) else (labels[0], labels[0])
    st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = first
matrix_col, cell_col = st.columns([3, 2])
with matrix_col:
    event = st.plotly_chart(
        confusion_figure(result.confusion),
        key="confusion",
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
    st.markdown(f"**{len(rows)}** images of *{true_label}* predicted as *{predicted_label}*")
    _ui.image_grid(list(rows.image[:24]), [f"{c:.0%}" for c in rows.confidence[:24]])

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

st.subheader("Most wrong")
st.caption("The validation images with the highest loss: often mislabelled or unusual images.")
worst = result.top_losses(12)
captions = [
    f"true {t} · predicted {p} ({c:.0%})"
    for t, p, c in zip(worst.true_label, worst.predicted_label, worst.confidence, strict=True)
]
if st.toggle(
    "Show where the model looked",
    help="A saliency map (Grad-CAM) for the predicted class on the model's (cropped) view.",
):
    try:
        overlays = saliency_overlays(
            str(summary.path), weights_mtime, tuple(worst.image), tuple(worst.predicted_label)
        )
        st.image(overlays, caption=captions, width=128)
    except TLStudioError as error:
        _ui.show_error(error)
else:
    _ui.image_grid(list(worst.image), captions, size=128)
