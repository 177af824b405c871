"""Predict: classify new images with a trained run, one by one or a whole folder at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from app_pages.panels import open_set
from app_pages.ui import feedback, inputs, run_picker, state
from tl_core.common import TLStudioError, escape_markdown, plural, safe_name
from tl_core.config import PREDICT_TOP_K
from tl_core.data import load_image
from tl_core.figures import STATIC_CHART_CONFIG, top_k_figure
from tl_core.inference import (
    Predictor,
    collect_image_paths,
    domain_shift_summary,
    open_set_frame,
    unknown_first,
)
from tl_core.runs import THRESHOLDS_FILE, WEIGHTS_FILE

st.title("Predict")
IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"]
BATCH_KEY, BATCH_RUN_KEY = "predict_batch_csv", "predict_batch_run"
BATCH_SUMMARY_KEY = "predict_batch_summary"  # the batch's "N of M look unlike" sentence
ws = state.workspace()


@st.cache_resource(max_entries=2, show_spinner="Loading the model...")
def predictor(run_path: str, weights_mtime: int, thresholds_mtime: int = 0) -> Predictor:
    # An inference model for a finished run: safe to share; never the model being trained.
    del weights_mtime, thresholds_mtime  # cache keys only: a tag's threshold edited, a new model
    return Predictor.from_run(run_path)


@st.cache_data(max_entries=64, show_spinner="Working out where the model looked...")
def saliency(run_path: str, weights_mtime: int, image_path: str) -> tuple[Image.Image, str, float]:
    """The Grad-CAM overlay for the predicted class, on the model's cropped view of the image."""
    return predictor(run_path, weights_mtime).explain(load_image(image_path))


def predict_folder(model: Predictor, folder: Path, top_k: int, threshold: float | None) -> Path:
    """Predicts every image below ``folder``, images unlike the training images first; the
    table is saved as a CSV, and the batch's summary kept in the session."""
    paths = collect_image_paths([folder])
    if not paths:
        raise TLStudioError(
            f"No image files were found in {folder.name}.",
            "Give a folder or .zip that holds .jpg or .png images.",
        )
    with st.spinner(f"Predicting {plural(len(paths), 'image')}..."):
        results = model.predict_paths(paths, top_k=top_k, threshold=threshold)
        frame = open_set_frame(results)
    st.session_state[BATCH_SUMMARY_KEY] = domain_shift_summary(
        results, checked=model.open_set is not None
    ).text
    frame["image"] = [Path(p).relative_to(folder).as_posix() for p in frame["image"]]
    out = ws.uploads / safe_name(f"predictions-{folder.name}.csv")
    frame.to_csv(out, index=False)
    return out


summary = run_picker.require_run()
# A table predicted by another run must not pass for this run's.
state.forget_on_change(BATCH_RUN_KEY, str(summary.path), [BATCH_KEY, BATCH_SUMMARY_KEY])
weights_mtime = (summary.path / WEIGHTS_FILE).stat().st_mtime_ns
thresholds = summary.path / THRESHOLDS_FILE  # a multi-label run's, edited on Evaluate
try:
    model = predictor(
        str(summary.path),
        weights_mtime,
        thresholds.stat().st_mtime_ns if thresholds.is_file() else 0,
    )
except TLStudioError as error:
    feedback.show_error(error)
    st.stop()
top_k = st.slider(
    "Tags shown per image" if model.multi_label else "Classes shown per image",
    1,
    len(model.labels),
    min(PREDICT_TOP_K, len(model.labels)),
)
threshold = open_set.threshold_control(model)

images_tab, batch_tab = st.tabs(["Images", "A .zip or folder"])
with images_tab:
    files = inputs.file_uploader(
        "Drop one or more images",
        inputs.IMAGE_UPLOAD_MB,
        type=IMAGE_TYPES,
        accept_multiple_files=True,
    )
    looked = st.toggle(
        "Show where the model looked",
        help="A saliency map (Grad-CAM) on the model's view of each image (resized and cropped "
        "to its input): the brighter a region, the more it raised the predicted class.",
    )
    # The camera asks for permission as soon as it is drawn: only when the user wants it.
    shot = st.camera_input("Take a picture") if st.toggle("Use the webcam") else None
    uploads = list(files or []) + ([shot] if shot else [])
    paths = [ws.save_upload_once(f, f.file_id, f.name, ws.predict_uploads) for f in uploads]
    results = model.predict_paths(paths, top_k=top_k, threshold=threshold)
    if len(results) > 1:
        open_set.show_summary(results, checked=model.open_set is not None)
    by_result = {id(r): u for u, r in zip(uploads, results, strict=True)}
    for result in unknown_first(results):  # the answers to doubt first
        upload = by_result[id(result)]
        cols = st.columns([1, 1, 2] if looked else [1, 3])
        image_col, chart_col = cols[0], cols[-1]
        if result.error:
            chart_col.warning(
                escape_markdown(f"{upload.name}: {result.error}"), icon=":material/warning:"
            )
            continue
        image_col.image(result.image, caption=escape_markdown(upload.name), width=160)
        if looked:
            try:
                heat, label, probability = saliency(str(summary.path), weights_mtime, result.image)
                caption = escape_markdown(f"Evidence for {label} ({probability:.0%})")
                cols[1].image(heat, caption=caption, width=160)
            except TLStudioError as error:
                cols[1].warning(escape_markdown(error.message), icon=":material/warning:")
        open_set.show_answer(result, chart_col)
        chart_col.plotly_chart(
            top_k_figure(result.predictions),
            key=f"topk_{upload.file_id}",
            config=STATIC_CHART_CONFIG,
        )

with batch_tab, st.form("batch_form"):
    archive = inputs.file_uploader("A .zip of images", inputs.ARCHIVE_UPLOAD_MB, type=["zip"])
    folder_text = inputs.folder_input("/path/to/images (searched recursively)")
    if st.form_submit_button("Predict all", type="primary"):
        try:
            folder = inputs.folder_from_form(archive, folder_text)
            st.session_state[BATCH_KEY] = str(predict_folder(model, folder, top_k, threshold))
            ws.discard_upload(folder)  # an extracted .zip: the table is all that is kept
        except TLStudioError as error:
            feedback.show_error(error)

if (csv_path := st.session_state.get(BATCH_KEY)) and Path(csv_path).is_file():
    with batch_tab:
        if batch_summary := st.session_state.get(BATCH_SUMMARY_KEY):
            st.info(escape_markdown(batch_summary), icon=":material/info:")
        table = pd.read_csv(csv_path)
        st.dataframe(
            table,
            hide_index=True,
            column_config={"confidence": st.column_config.NumberColumn(format="percent")},
        )
        st.download_button(
            "Download CSV",
            Path(csv_path).read_bytes(),
            file_name=Path(csv_path).name,
            mime="text/csv",
            icon=":material/download:",
            on_click="ignore",
        )
