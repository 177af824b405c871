"""Export: take a trained run away, as a portable .zip or as TorchScript."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from app_pages import _ui
from tl_core.errors import TLStudioError
from tl_core.export import export_torchscript, export_zip, how_to_load_text
from tl_core.runs import WEIGHTS_FILE, load_run

st.title("Export")
TORCHSCRIPT_KEY = "torchscript_for"


@st.cache_data(max_entries=2, show_spinner="Packing the run...")
def zip_bytes(run_path: str, weights_mtime: int) -> bytes:
    del weights_mtime  # cache key only
    with tempfile.TemporaryDirectory() as tmp:
        return export_zip(run_path, Path(tmp) / "run.zip").read_bytes()


@st.cache_data(max_entries=2, show_spinner="Tracing the model to TorchScript...")
def torchscript_bytes(run_path: str, weights_mtime: int) -> bytes:
    del weights_mtime  # cache key only
    with tempfile.TemporaryDirectory() as tmp:
        return export_torchscript(run_path, Path(tmp) / "model.pt").read_bytes()


summary = _ui.require_run()
path, mtime = str(summary.path), (summary.path / WEIGHTS_FILE).stat().st_mtime_ns
try:
    run = load_run(path)
    size = run.preprocessing.image_size

    st.subheader("Run folder (.zip)")
    st.write(
        "Weights, settings, class names, metrics and a short text on how to load them; "
        "the `tl-studio` command line reads it back."
    )
    st.download_button(
        "Download run (.zip)",
        zip_bytes(path, mtime),
        file_name=f"{summary.name}.zip",
        mime="application/zip",
        icon=":material/folder_zip:",
        type="primary",
        on_click="ignore",
    )

    st.subheader("TorchScript")
    st.write(
        f"One file that runs without TL Studio or timm: input a float tensor "
        f"(N, 3, {size}, {size}) with values in [0, 1]; normalisation is inside. The class "
        "names and the preprocessing are inside too (`model.class_names`; see below)."
    )
    if st.session_state.get(TORCHSCRIPT_KEY) != path:
        if st.button("Build TorchScript file", icon=":material/build:"):
            st.session_state[TORCHSCRIPT_KEY] = path
            st.rerun()
    else:
        st.download_button(
            "Download TorchScript (.pt)",
            torchscript_bytes(path, mtime),
            file_name=f"{summary.name}.pt",
            mime="application/octet-stream",
            icon=":material/download:",
            on_click="ignore",
        )

    with st.expander("How to load it"):
        st.code(how_to_load_text(run), language="text")
except TLStudioError as error:
    _ui.show_error(error)
