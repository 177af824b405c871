"""Export: take a trained run away, as a portable .zip or as a model file (ONNX, .pt2)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from app_pages.panels import web_page
from app_pages.ui import feedback, run_picker
from tl_core.common import TLStudioError, format_size
from tl_core.export import (
    MODEL_FORMATS,
    ExportCheck,
    ModelFormat,
    export_model,
    export_zip,
    how_to_load_text,
    model_card_text,
)
from tl_core.runs import WEIGHTS_FILE, load_run

st.title("Export")
# The formats offered here; TorchScript is deprecated by PyTorch and stays on the CLI only.
OFFERED = [f for f in MODEL_FORMATS.values() if not f.legacy]


def built_key(fmt: ModelFormat) -> str:
    """Session key holding the run whose ``fmt`` file the user asked to build."""
    return f"export_{fmt.name}_for"


@st.cache_data(max_entries=2, show_spinner="Packing the run...")
def zip_bytes(run_path: str, weights_mtime: int) -> bytes:
    del weights_mtime  # cache key only
    with tempfile.TemporaryDirectory() as tmp:
        return export_zip(run_path, Path(tmp) / "run.zip").read_bytes()


@st.cache_data(
    max_entries=4,
    show_spinner="Exporting the model and checking it against PyTorch on the run's images "
    "(ONNX takes up to a minute)...",
)
def model_file(run_path: str, weights_mtime: int, model_format: str) -> tuple[bytes, ExportCheck]:
    """The exported file's bytes and its check (a failed check raises: nothing is cached)."""
    del weights_mtime  # cache key only
    with tempfile.TemporaryDirectory() as tmp:
        result = export_model(run_path, Path(tmp) / "model", model_format)
        return result.path.read_bytes(), result.check


def show_model_format(fmt: ModelFormat, run_path: str, mtime: int, name: str) -> None:
    """One format: what loads it, then a build button, or its size, check and download."""
    with st.container(border=True):
        st.markdown(f"**{fmt.title}** · loaded by {fmt.loaded_by}")
        if st.session_state.get(built_key(fmt)) != run_path:
            if st.button(f"Build {fmt.title} file", icon=":material/build:", key=fmt.name):
                st.session_state[built_key(fmt)] = run_path
                st.rerun()
            return
        try:
            data, check = model_file(run_path, mtime, fmt.name)
        except TLStudioError as error:
            st.session_state.pop(built_key(fmt))  # show the button again, not a retry per rerun
            feedback.show_error(error)
            return
        st.success(f"{format_size(len(data))} · check: {check.text}", icon=":material/verified:")
        st.download_button(
            f"Download {fmt.title} file",
            data,
            file_name=f"{name}{fmt.suffix}",
            mime="application/octet-stream",
            icon=":material/download:",
            on_click="ignore",
        )


summary = run_picker.require_run()
path, mtime = str(summary.path), (summary.path / WEIGHTS_FILE).stat().st_mtime_ns
try:
    run = load_run(path)
    size = run.preprocessing.image_size

    st.subheader("Run folder (.zip)")
    st.write(
        "Weights, settings, class names, metrics, a model card (README.md), a short text on "
        "how to load them, and `predict.py`, which classifies images with torch, timm and "
        "pillow alone; the `tl-studio` command line reads it back too."
    )
    archive = zip_bytes(path, mtime)
    st.download_button(
        "Download run (.zip)",
        archive,
        file_name=f"{summary.name}.zip",
        mime="application/zip",
        icon=":material/folder_zip:",
        type="primary",
        on_click="ignore",
    )
    st.caption(format_size(len(archive)))

    st.subheader("Model file")
    st.write(
        f"One file that runs without TL Studio or timm: input a float tensor (N, 3, {size}, "
        f"{size}) with values in [0, 1], any N; normalisation is inside, and so are the class "
        "names and the preprocessing (see below). Each file is loaded back by its own runtime "
        "and compared with PyTorch on the run's images before it is offered. ONNX loads almost "
        "everywhere; `predict_onnx.py` in the .zip runs it with onnxruntime and pillow."
    )
    if run.multi_label:
        st.info(
            "This run gives several tags per image: each file also returns `tags` (whether each "
            "tag's probability reaches its threshold), the thresholds are listed inside, and the "
            ".zip carries them in thresholds.json.",
            icon=":material/sell:",
        )
    for fmt in OFFERED:
        show_model_format(fmt, path, mtime, summary.name)

    web_page.web_page_section(path, mtime, summary.name)

    with st.expander("How to load it"):
        st.code(how_to_load_text(run), language="text")
    with st.expander("Model card (README.md in the .zip)"):
        st.markdown(model_card_text(run))
except TLStudioError as error:
    feedback.show_error(error)
