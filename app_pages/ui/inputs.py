"""Inputs the pages share: uploaders with their size limits, and folders typed or uploaded as a
.zip, read from the server's disk only where the workspace allows.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from app_pages.ui.state import workspace
from tl_core.common import (
    TLStudioError,
    format_size,
)

# Streamlit holds every upload in the server's memory until the page has saved it, several
# at a time, so each is capped to what a workstation can hold. The largest cap is also
# server.maxUploadSize in .streamlit/config.toml, which the server itself enforces.
ARCHIVE_UPLOAD_MB = 1024
WEIGHTS_UPLOAD_MB = 1024
IMAGE_UPLOAD_MB = 50
FOLDER_LABEL = "Or a folder on this computer"
FOLDER_HELP = (
    "A folder on the disk of the computer running TL Studio, which may not be the one your "
    "browser runs on. System folders are never read; when TL Studio answers other computers, "
    "only folders under its user's home folder or in its workspace are."
)


def file_uploader(label: str, limit_mb: int, help: str | None = None, **kwargs):
    """``st.file_uploader`` with a size limit per file, said in its help text."""
    limit = f"Up to {format_size(limit_mb << 20)} per file."
    return st.file_uploader(
        label, help=f"{help} {limit}" if help else limit, max_upload_size=limit_mb, **kwargs
    )


def folder_input(placeholder: str) -> str:
    """A text field for a folder on the server's disk (see ``folder_from_form``)."""
    return st.text_input(FOLDER_LABEL, placeholder=placeholder, help=FOLDER_HELP)


def folder_from_form(archive: UploadedFile | None, folder_text: str) -> Path:
    """The folder a form names: an uploaded .zip, extracted safely into the workspace, or a
    folder typed in ``folder_input``, on the server's disk (``Workspace.readable_folder``
    says which folders it reads).

    Raises:
        TLStudioError: Neither was given, the zip is damaged or unsafe, or the path is not
            a folder the server reads.
    """
    ws = workspace()
    if archive is not None:
        zip_path = ws.save_upload(archive, archive.name)
        try:
            return ws.extract_upload(zip_path)
        finally:
            zip_path.unlink(missing_ok=True)  # the extracted copy is what is kept
    if folder_text.strip():
        return ws.readable_folder(folder_text, st.get_option("server.address"))
    raise TLStudioError("Choose a .zip or type a folder path first.")
