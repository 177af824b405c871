"""The Data page's review of suspected label errors, and fixing them without touching the files.

The search (``tl_core.analysis.label_issues``) runs in a background thread like the backbone
advisor.
Each suspect shows its image, the label it carries and the one the model believes; the user
relabels it, excludes it, or confirms it (``_decisions``). Saving makes a new version of the
dataset (``tl_core.data.versions``): the user's files are never modified, and the next
training uses the version.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import _decisions, _ui
from tl_core.analysis import LabelCheckStopped, LabelIssue, find_label_issues
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.data import DatasetReport, original_image, reviewed
from tl_core.jobs import Comparison, ComparisonRegistry

FIND_LABEL = "Find suspected label errors"
SCOPE = "review"  # this gallery's choices and save button (see _decisions)
MAX_SHOWN = 24  # the most suspicious first; past these, the rest are rarely errors
INTRO = (
    "A simple classifier on the default backbone's features predicts every image from the "
    "others (5-fold cross-validation); confident learning (the cleanlab library) then flags "
    "the images whose label it argues against. Your files are never changed: decisions are "
    "saved as a new version of the dataset, which the next training uses."
)


@st.cache_resource(show_spinner=False)
def searches() -> ComparisonRegistry:
    # One registry for the whole process, so a reload finds a search again.
    return ComparisonRegistry()


def label_review(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The panel: the search's button and progress, then the suspects with their decisions."""
    search = searches().latest(dataset)
    with st.expander("Suspected label errors", icon=":material/rule:", expanded=search is not None):
        st.caption(INTRO)
        start_button(dataset, report, cache_dir)
        if search is None:
            return
        if search.is_active:
            live_search(dataset)
            return
        snap = search.snapshot()
        if snap.status == "failed" and snap.error is not None:
            _ui.show_error(snap.error)
        elif snap.status == "stopped":
            st.info("Stopped: nothing was checked.", icon=":material/stop_circle:")
        elif snap.status == "completed":
            suspects(dataset, report, snap.result)


def start_button(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    reason = None
    if _ui.registry().active() is not None:
        reason = "A training job is running: check the labels once it has finished."
    elif searches().active() is not None:
        reason = "A search is running: wait for it to finish or stop it."
    elif not report.can_train:
        reason = "Fix the problems above first: the search needs a dataset that can train."
    if st.button(FIND_LABEL, icon=":material/search:", disabled=reason is not None):
        try:
            searches().start(
                report,
                dataset,
                cache_dir,
                advise_function=find_label_issues,
                stopped_error=LabelCheckStopped,
            )
        except TLStudioError as error:
            _ui.show_error(error)
            return
        st.rerun()
    if reason:
        st.caption(reason)


@_ui.fragment(run_every=1.0)
def live_search(dataset: str) -> None:
    search: Comparison = searches().latest(dataset)
    snap = search.snapshot()
    if not snap.is_active:
        st.rerun()  # once, so the whole panel shows the outcome
    st.progress(snap.progress, text=escape_markdown(snap.message))
    if snap.status != "stopping":
        st.button("Stop", icon=":material/stop:", on_click=search.stop, key="review_stop")


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
        _decisions.Candidate(
            key=image,
            path=str(issue.path),
            label=issue.given,
            caption=f"{escape_markdown(image)}: labelled **{escape_markdown(issue.given)}**, "
            f"looks like **{escape_markdown(issue.suggested)}** ({issue.confidence:.0%})",
            suggested=issue.suggested,
        )
        for image, issue in open_issues[:MAX_SHOWN]
    ]
    decisions = _decisions.gallery(SCOPE, dataset, candidates, report.class_names)
    if len(open_issues) > MAX_SHOWN:
        st.caption(f"{len(open_issues) - MAX_SHOWN} more suspects, less likely, not shown.")
    _decisions.save_button(SCOPE, dataset, report.root, report.class_names, decisions)
