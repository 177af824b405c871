"""The Data page's review of suspected label errors, and fixing them without touching the files.

The search (``tl_core.label_issues``) runs in a background thread like the backbone advisor.
Each suspect shows its image, the label it carries and the one the model believes; the user
relabels it, excludes it, or confirms it. Saving makes a new version of the dataset
(``tl_core.dataset_versions``): the user's files are never modified, and the next training uses
the version.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import _ui
from tl_core.comparisons import Comparison, ComparisonRegistry
from tl_core.dataset_versions import (
    EXCLUDE,
    KEEP,
    RELABEL,
    Decision,
    create_version,
    original_image,
    read_version,
    reviewed,
)
from tl_core.datasets import DatasetReport
from tl_core.errors import TLStudioError
from tl_core.label_issues import LabelCheckStopped, LabelIssue, find_label_issues
from tl_core.text import escape_markdown, plural

FIND_LABEL = "Find suspected label errors"
SAVE_LABEL = "Save decisions as a new version"
UNDECIDED = "Undecided"
EXCLUDE_CHOICE = "Exclude from training"
KEEP_CHOICE = "Keep: the label is right"
MAX_SHOWN = 24  # the most suspicious first; past these, the rest are rarely errors
NOTICE_KEY = "review_notice"
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


def _decision_key(dataset: str, image: str) -> str:
    return f"review:{dataset}:{image}"


def label_review(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The panel: the search's button and progress, then the suspects with their decisions."""
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.success(notice, icon=":material/check_circle:")
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


def _choices(issue: LabelIssue) -> list[str]:
    return [UNDECIDED, f"Relabel as {issue.suggested}", EXCLUDE_CHOICE, KEEP_CHOICE]


def _decision(image: str, choice: str, issue: LabelIssue) -> Decision | None:
    if choice == EXCLUDE_CHOICE:
        return Decision(image, EXCLUDE)
    if choice == KEEP_CHOICE:
        return Decision(image, KEEP)
    if choice.startswith("Relabel as "):
        return Decision(image, RELABEL, issue.suggested)
    return None


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
    decisions: dict[str, Decision] = {}
    shown = open_issues[:MAX_SHOWN]
    with st.container(horizontal=True, gap="medium"):
        for image, issue in shown:
            with st.container(width=_ui.THUMB_SIZE * 2):
                thumb = _ui.thumbnail(str(issue.path), _ui.THUMB_SIZE * 2)
                if thumb is not None:
                    st.image(thumb, width=_ui.THUMB_SIZE * 2)
                st.caption(
                    f"{escape_markdown(image)}: labelled **{escape_markdown(issue.given)}**, "
                    f"looks like **{escape_markdown(issue.suggested)}** ({issue.confidence:.0%})"
                )
                choice = st.selectbox(
                    "Decision",
                    _choices(issue),
                    key=_decision_key(dataset, image),
                    label_visibility="collapsed",
                )
                if (decision := _decision(image, choice, issue)) is not None:
                    decisions[image] = decision
    if len(open_issues) > MAX_SHOWN:
        st.caption(f"{len(open_issues) - MAX_SHOWN} more suspects, less likely, not shown.")
    counts = plural(len(decisions), "decision")
    if st.button(
        f"{SAVE_LABEL} ({counts})",
        type="primary",
        icon=":material/save:",
        disabled=not decisions,
        key="review_save",
    ):
        save(dataset, report, decisions)


def save(dataset: str, report: DatasetReport, decisions: dict[str, Decision]) -> None:
    try:
        version = create_version(
            report.root, decisions, list(report.class_names), _ui.workspace().datasets
        )
    except TLStudioError as error:
        _ui.show_error(error)
        return
    for image in decisions:  # the next version starts with no pending choice
        st.session_state.pop(_decision_key(dataset, image), None)
    st.session_state[NOTICE_KEY] = (
        f"Saved {escape_markdown(version.describe())}. The next training uses it; your "
        "original files are unchanged."
    )
    st.session_state[_ui.DATASET_KEY] = str(version.path)
    st.rerun()  # the page, the sidebar and the health report all show the new version


def version_caption(dataset: str) -> None:
    """Under the dataset's name: which version it is, and of what."""
    version = read_version(dataset)
    if version is not None:
        st.caption(escape_markdown(version.describe().capitalize()))
