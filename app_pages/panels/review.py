"""The Data page's review of suspected label errors, and fixing them without touching the files.

The search (``tl_core.analysis.label_issues``) is a job like the backbone advisor's, run by
the one scheduler in a background thread.
Each suspect shows its image, the label it carries and the one the model believes; the user
relabels it, excludes it, or confirms it (``_decisions``). Saving makes a new version of the
dataset (``tl_core.data.versions``): the user's files are never modified, and the next
training uses the version.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.panels import decisions as decisions_panel
from app_pages.ui import feedback, queue, state
from tl_core.analysis import LabelIssue
from tl_core.common import escape_markdown, plural
from tl_core.data import DatasetReport, original_image, reviewed
from tl_core.jobs import LABEL_SEARCH, Job, label_search_job

FIND_LABEL = "Find suspected label errors"
SCOPE = "review"  # this gallery's choices and save button (see _decisions)
MAX_SHOWN = 24  # the most suspicious first; past these, the rest are rarely errors
INTRO = (
    "A simple classifier on the default backbone's features predicts every image from the "
    "others (5-fold cross-validation); confident learning (the cleanlab library) then flags "
    "the images whose label it argues against. Your files are never changed: decisions are "
    "saved as a new version of the dataset, which the next training uses."
)


def latest_search(dataset: str) -> Job | None:
    """The newest search of ``dataset`` in this workspace, so a reload finds it again."""
    return state.scheduler().latest((LABEL_SEARCH,), dataset)


def label_review(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The panel: the search's button and progress, then the suspects with their decisions."""
    search = latest_search(dataset)
    with st.expander("Suspected label errors", icon=":material/rule:", expanded=search is not None):
        st.caption(INTRO)
        start_button(dataset, report, cache_dir)
        if search is None:
            return
        if search.is_queued:
            queue.waiting(search, "review")
            return
        if search.is_active:
            queue.live_analysis(search, "review")
            return
        snap = search.snapshot()
        if snap.status == "failed":
            feedback.show_error(snap.failure)
        elif snap.status in ("stopped", "cancelled"):
            st.info("Stopped: nothing was checked.", icon=":material/stop_circle:")
        elif snap.status == "completed":
            suspects(dataset, report, snap.result)


def start_button(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The search button; other jobs do not disable it: the scheduler queues the search."""
    reason = None
    search = latest_search(dataset)
    if search is not None and not search.has_ended:
        reason = "A search of these images is under way: wait for it to finish or stop it."
    elif not report.can_train:
        reason = "Fix the problems above first: the search needs a dataset that can train."
    if st.button(FIND_LABEL, icon=":material/search:", disabled=reason is not None):
        state.scheduler().submit(label_search_job(report, dataset, cache_dir))
        st.rerun()
    if reason:
        st.caption(reason)
    elif note := queue.start_note():
        st.caption(note)


def suspects(dataset: str, report: DatasetReport, issues: list[LabelIssue]) -> None:
    """The suspects not yet decided about, each with its choice; then the save button."""
    done = reviewed(report.root)
    keyed = [(original_image(report.root, issue.path), issue) for issue in issues]
    open_issues = [(image, issue) for image, issue in keyed if image not in done]
    if not issues:
        st.success("No label looks wrong.", icon=":material/check_circle:")
        return
    st.markdown(
        f"**{plural(len(issues), 'suspect')}**, most suspicious first"
        + (f"; {len(issues) - len(open_issues)} already decided in this version." if done else ".")
    )
    candidates = [
        decisions_panel.Candidate(
            key=image,
            path=str(issue.path),
            label=issue.given,
            caption=f"{escape_markdown(image)}: labelled **{escape_markdown(issue.given)}**, "
            f"looks like **{escape_markdown(issue.suggested)}** ({issue.confidence:.0%})",
            suggested=issue.suggested,
        )
        for image, issue in open_issues[:MAX_SHOWN]
    ]
    decisions = decisions_panel.gallery(SCOPE, dataset, candidates, report.class_names)
    if len(open_issues) > MAX_SHOWN:
        st.caption(f"{len(open_issues) - MAX_SHOWN} more suspects, less likely, not shown.")
    decisions_panel.save_button(SCOPE, dataset, report.root, report.class_names, decisions)
