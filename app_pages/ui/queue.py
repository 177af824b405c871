"""The line of heavy jobs as the pages and the sidebar show it.

``tl_core.jobs.scheduler`` owns the rule (one heavy job at a time, the others wait in line);
this module only draws what it says: a waiting job's place with a Cancel button, a note by
the Start buttons that the job will wait its turn, and the jobs a stopped server interrupted.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app_pages.ui import feedback, state
from tl_core.common import escape_markdown
from tl_core.jobs import Job, JobSnapshot, ordinal

CANCEL_LABEL = "Cancel"
DISMISS_LABEL = "Dismiss"


def start_note() -> str | None:
    """What pressing Start does while another job runs, or None when it starts at once."""
    place = len(state.line_snapshots()) + 1  # as the page's own status reads the line
    if place == 1:
        return None
    return f"Another job is running: a job started now waits its turn, {ordinal(place)} in line."


def queued_line(snap: JobSnapshot) -> str:
    """The sidebar's line of a waiting job: its title and its place in line."""
    return f"**Job** {escape_markdown(snap.title)} · {escape_markdown(snap.message)}"


def _cancel(job_id: str) -> None:
    state.scheduler().cancel(job_id)


def _redraw_while(
    job: Job, still: Callable[[JobSnapshot], bool], draw: Callable[[JobSnapshot], None]
) -> None:
    """Draws ``draw(snapshot)`` every second while ``still(snapshot)`` holds, then reruns the
    whole page once, so it shows what came next."""

    @feedback.fragment(run_every=1.0)
    def following() -> None:
        snap = state.job_snapshot(job)
        if not still(snap):
            st.rerun()
        draw(snap)

    following()


def waiting(job: Job, key: str) -> None:
    """A waiting job: its place in line and a Cancel button, redrawn until its turn comes.

    Args:
        job: The queued job.
        key: Sets this panel's button apart from other panels' on the same page.
    """

    def draw(snap: JobSnapshot) -> None:
        st.info(escape_markdown(snap.message), icon=":material/schedule:")
        st.button(
            CANCEL_LABEL,
            icon=":material/cancel:",
            on_click=feedback.callback(_cancel),
            args=(job.job_id,),
            key=f"{key}_cancel",
            help="Takes this job out of the line; it will not run.",
        )

    _redraw_while(job, lambda snap: snap.is_queued, draw)


def live_analysis(job: Job, key: str) -> None:
    """A running analysis's progress and Stop button, redrawn every second until it ends.

    Args:
        job: The running job.
        key: Sets this panel's button apart from other panels' on the same page.
    """

    def draw(snap: JobSnapshot) -> None:
        st.progress(snap.progress, text=escape_markdown(snap.message))
        if snap.status != "stopping":  # the progress text already says it is stopping
            st.button(
                "Stop",
                icon=":material/stop:",
                on_click=feedback.callback(job.stop),
                key=f"{key}_stop",
            )

    _redraw_while(job, lambda snap: snap.is_active, draw)


def interrupted_notices() -> None:
    """The jobs that were running or waiting when the server last stopped, each in a
    sentence, until dismissed."""
    scheduler = state.scheduler()
    for lost in scheduler.interrupted():
        st.warning(
            f"**{escape_markdown(lost.title)}**: {escape_markdown(lost.sentence)}",
            icon=":material/history:",
        )
        st.button(
            DISMISS_LABEL,
            key=f"dismiss_{lost.job_id}",
            on_click=feedback.callback(scheduler.dismiss),
            args=(lost.job_id,),
        )
