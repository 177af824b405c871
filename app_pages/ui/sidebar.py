"""The sidebar on every page: the device, this session's job (live while it runs), the queue's
notices, and the current dataset and run.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app_pages.ui import queue as ui_queue
from app_pages.ui.feedback import fragment
from app_pages.ui.state import (
    DATASET_KEY,
    VANISHED_RUN_KEY,
    current_job,
    current_run,
    job_snapshot,
)
from tl_core.common import (
    TLStudioError,
    describe_devices,
    escape_markdown,
)
from tl_core.jobs import TrainingJob
from tl_core.runs import summarize_run


@st.cache_data(ttl=5, show_spinner=False)
def _device_info() -> dict:
    return describe_devices()


def _job_status(job: TrainingJob) -> None:
    snap = job_snapshot(job)
    if snap.is_queued:
        st.markdown(ui_queue.queued_line(snap))
        st.empty()
        return
    accuracy = f" · best {snap.best_accuracy_text}" if snap.best_accuracy_text else ""
    queue = f" · {snap.queue_position.lower()}" if snap.is_active and snap.queue_position else ""
    st.markdown(
        f"**Job** {escape_markdown(snap.name)} · {snap.status}{escape_markdown(queue)} · "
        f"epochs done {snap.epochs_done}{accuracy}"
    )
    # Always two elements, so a redraw replaces both rather than leaving a stale bar.
    if snap.is_active:
        st.progress(snap.progress, text=escape_markdown(snap.message))
    else:
        st.empty()


class SidebarSlots(NamedTuple):
    """Placeholders for the sidebar lines that a page run can change."""

    job: DeltaGenerator
    dataset: DeltaGenerator
    run: DeltaGenerator


def _sidebar_lines(slots: SidebarSlots, live: bool) -> None:
    """The session's job, dataset and run, each replacing what its slot held."""
    job = current_job()
    if job is None:
        slots.job.empty()
    elif live and ((snap := job_snapshot(job)).is_active or snap.is_queued):
        with slots.job:  # refresh the status on every page while the job runs
            fragment(run_every=2.0)(_job_status)(job)
    else:
        with slots.job.container():
            _job_status(job)
    if path := st.session_state.get(DATASET_KEY):
        slots.dataset.caption(f"Dataset: {escape_markdown(Path(path).name)}")
    else:
        slots.dataset.empty()
    if run := current_run():
        slots.run.caption(f"Run: {escape_markdown(run_title(run))}")
    elif vanished := st.session_state.get(VANISHED_RUN_KEY):
        slots.run.caption(f"Run: {escape_markdown(Path(vanished).name)} was deleted")
    else:
        slots.run.empty()


def run_title(path: str) -> str:
    """The run's title, as every list of runs shows it (its folder name if unreadable)."""
    try:
        return summarize_run(Path(path)).title
    except (TLStudioError, OSError):
        return Path(path).name


def render_sidebar() -> SidebarSlots:
    """Device, job and current dataset/run, on every page, drawn before the page runs.

    Returns:
        The slots of the job and run lines: hand them to ``refresh_sidebar`` once the page
        has run. Should the page end in ``st.stop()``, these lines stay as drawn here.
    """
    with st.sidebar:
        info = _device_info()
        if info["cuda"]:
            st.markdown(
                f":material/memory: **{info['name']}** · {info['free_memory_gb']:.1f} of "
                f"{info['total_memory_gb']:.1f} GB free"
            )
        else:
            st.markdown(":material/memory: **CPU** (no GPU found)")
        slots = SidebarSlots(st.empty(), st.empty(), st.empty())
        ui_queue.interrupted_notices()
    _sidebar_lines(slots, live=False)
    return slots


def refresh_sidebar(slots: SidebarSlots) -> None:
    """Redraws the job and run lines after the page ran, so a job it started or a run it
    picked shows at once rather than after the next rerun."""
    _sidebar_lines(slots, live=True)
