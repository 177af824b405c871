"""Data: bring in labelled images (a .zip, class by class, or the sample) and check their health."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from app_pages.panels import decisions, duplicates, readiness, review, tags_report, versions
from app_pages.ui import dataset_view, feedback, inputs, state
from tl_core.common import TLStudioError, escape_markdown
from tl_core.data import sample_dataset_path

st.title("Data")
st.caption(
    "One folder per class. Every image is opened once, so problems show up here, not "
    "halfway through training."
)
ws = state.workspace()
IMPORTED_KEY = "imported_zip_id"  # the uploaded file already imported


def use_dataset(path: Path) -> None:
    st.session_state[state.DATASET_KEY] = str(path)
    st.rerun()  # so the sidebar, drawn before this page, names the new dataset


def import_zip(upload) -> Path | None:
    """Saves an uploaded .zip to disk, extracts it, and keeps it only if it can train."""
    with st.spinner(f"Unpacking {escape_markdown(upload.name)}..."):
        zip_path = ws.save_upload(upload, upload.name)
        try:
            folder = ws.import_zip(zip_path, Path(upload.name).stem)
        finally:
            zip_path.unlink(missing_ok=True)  # the extracted copy is what is kept
    report = dataset_view.scan(folder)
    if report.can_train:
        return report.root
    dataset_view.render_report(report, thumbnails=False)
    shutil.rmtree(folder, ignore_errors=True)
    return None


zip_tab, build_tab, sample_tab, saved_tab = st.tabs(
    ["Upload a .zip", "Build classes here", "Sample dataset", "Imported before"]
)
try:
    with zip_tab:
        upload = inputs.file_uploader(
            "A .zip holding one folder per class (or images with a labels.csv of tags)",
            inputs.ARCHIVE_UPLOAD_MB,
            type=["zip"],
            help="For example pets.zip with cats/ and dogs/ inside (a wrapping folder is fine). "
            "For several tags per image, add a labels.csv (image,labels; tags separated by ';'). "
            "It is imported as soon as it has uploaded. A larger dataset trains from its "
            "folder with the command line: tl-studio train --data FOLDER.",
        )
        # Import once per uploaded file: the page reruns on every click while the file
        # stays in the uploader.
        if upload is not None and upload.file_id != st.session_state.get(IMPORTED_KEY):
            st.session_state[IMPORTED_KEY] = upload.file_id
            if (root := import_zip(upload)) is not None:
                use_dataset(root)

    with build_tab:
        st.caption(
            "Name a class, then drag its images in or take webcam shots. Repeat for "
            "every class; two or more classes are needed."
        )
        name = st.text_input("Dataset name", value="my-dataset")
        webcam = st.toggle("Use the webcam")  # the camera asks for permission once drawn
        with st.form("class_form", clear_on_submit=True):
            class_name = st.text_input("Class name", placeholder="e.g. cats")
            images = inputs.file_uploader(
                "Images of this class",
                inputs.IMAGE_UPLOAD_MB,
                type=["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"],
                accept_multiple_files=True,
            )
            shot = st.camera_input("Take a picture") if webcam else None
            if st.form_submit_button("Add to class", type="primary"):
                files = [(f.name, f) for f in images or []] + ([(shot.name, shot)] if shot else [])
                if not files:
                    st.warning("Add at least one image or webcam shot.")
                else:
                    dataset = ws.dataset_dir(name)
                    ws.add_class_images(dataset, class_name, files)
                    st.toast(f"Added {len(files)} image(s) to '{escape_markdown(class_name)}'.")
                    use_dataset(dataset)

    with sample_tab:
        st.write(
            "A small built-in set of drawn shapes, one folder per class: it trains in well "
            "under a minute on a CPU."
        )
        if st.button("Load sample dataset", type="primary"):
            use_dataset(sample_dataset_path())

    with saved_tab:
        saved = ws.list_datasets()
        if not saved:
            st.caption("Nothing imported yet: datasets you upload or build are kept here.")
        else:
            titles = {str(entry.path): entry.title for entry in saved}
            chosen = st.selectbox("Dataset", list(titles), format_func=titles.get)
            if st.button("Use this dataset"):
                use_dataset(Path(chosen))
except TLStudioError as error:
    feedback.show_error(error)

current = st.session_state.get(state.DATASET_KEY)
if not current:
    st.info(
        "No dataset yet: upload a .zip, build classes, or load the sample dataset.",
        icon=":material/info:",
    )
    st.stop()

st.subheader(f"Dataset: {escape_markdown(Path(current).name)}")
versions.version_caption(current)
decisions.show_notice()
try:
    report = dataset_view.scan(current)
except TLStudioError as error:
    feedback.show_error(error)
    st.stop()
readiness.readiness(current, report)
versions.versions_panel(current, ws.datasets)
if report.multi_label:
    tags_report.tag_health(report)
    tags_report.tag_review(current, report)
review.label_review(current, report, ws.feature_cache)
duplicates.duplicates_review(current, report)
dataset_view.render_report(report, duplicate_table=False)  # the gallery of copies shows them
