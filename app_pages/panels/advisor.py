"""The Model page's "Which backbone?" panel: backbones ranked on the user's own images.

The comparison is a job like training (``tl_core.jobs.analysis_jobs``), run by the one
scheduler in a thread that never calls Streamlit; the panel redraws from its snapshot. The
scheduler keeps the newest comparison of each dataset, so a page switch or a browser reload
finds it again, waiting, running or finished.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.ui import feedback, queue, state
from tl_core.analysis import AdvisorResult
from tl_core.common import escape_markdown
from tl_core.config import ADVISOR_FOLDS, ADVISOR_MAX_IMAGES
from tl_core.data import DatasetReport
from tl_core.jobs import COMPARISON, Job, JobSnapshot, comparison_job

COMPARE_LABEL = "Compare backbones on my images"
STOPPED = "Stopped: nothing was compared."
RUNNING_REASON = "These images are being compared: wait for it to finish, or stop it."
INTRO = (
    f"Before anything trains: up to {ADVISOR_MAX_IMAGES} of your images go once through each "
    "backbone whose weights are on this computer, and a simple classifier learns your classes "
    f"from what comes out, {ADVISOR_FOLDS} times on different parts of them. That is the "
    "accuracy to expect when only the new head trains. The features are kept, so comparing "
    "again does not compute them twice."
)
# The table's columns, in order, with what each means; the frame's other columns stay hidden.
COLUMNS = {
    "rank": st.column_config.NumberColumn("#", width="small"),
    "backbone": st.column_config.TextColumn("Backbone"),
    "expected accuracy, head only": st.column_config.TextColumn(
        "Expected accuracy, head only",
        help="Mean accuracy of a classifier trained on the frozen features, with the lowest "
        "and highest over the folds in brackets.",
    ),
    "LogME": st.column_config.NumberColumn(
        format="%.3f", help="A second score of the same features (LogME); higher is better."
    ),
    "images/s": st.column_config.NumberColumn(
        "Images/s", format="%.0f", help="Speed of the backbone on this computer."
    ),
    "params (M)": st.column_config.NumberColumn(
        "Parameters", format="%.1f M", help="Millions, with the 1000-class ImageNet head."
    ),
    "input size": st.column_config.NumberColumn("Input size", format="%d px"),
    "ImageNet top-1": st.column_config.NumberColumn(
        format="percent",
        help="Accuracy on ImageNet: what a pick that never saw your images would go by.",
    ),
    "about the same": st.column_config.CheckboxColumn(
        "About the same",
        help="Its range overlaps the best one's: your images cannot tell the two apart.",
    ),
}


def latest_comparison(dataset: str) -> Job | None:
    """The newest comparison of ``dataset`` in this workspace: waiting, running or ended."""
    return state.scheduler().latest((COMPARISON,), dataset)


def backbone_advisor(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The panel: a button that starts a comparison, its progress, then its ranking."""
    with st.expander(
        "Which backbone?",
        icon=":material/leaderboard:",
        expanded=latest_comparison(dataset) is not None,
    ):
        st.caption(INTRO)
        start_button(dataset, report, cache_dir)
        comparison = latest_comparison(dataset)
        if comparison is None:
            return
        if comparison.is_queued:
            queue.waiting(comparison, "advisor")
        elif comparison.is_active:
            queue.live_analysis(comparison, "advisor")
        else:
            render_outcome(comparison.snapshot())


def busy_reason(dataset: str) -> str | None:
    """Why no comparison of ``dataset`` can start now (one is waiting or running already),
    or None when one can. Other jobs do not stop it: the scheduler queues it behind them."""
    comparison = latest_comparison(dataset)
    if comparison is not None and not comparison.has_ended:
        return RUNNING_REASON
    return None


def start_button(dataset: str, report: DatasetReport, cache_dir: Path) -> None:
    """The compare button, disabled with the reason beside it while this dataset's
    comparison is under way; else a note when it would wait its turn."""
    reason = busy_reason(dataset)
    button_col, reason_col = st.columns([2, 3], vertical_alignment="center")
    clicked = button_col.button(
        COMPARE_LABEL, icon=":material/compare_arrows:", disabled=reason is not None
    )
    if reason is not None:
        reason_col.caption(reason)
        return  # a click that raced the disabling starts nothing
    if note := queue.start_note():
        reason_col.caption(note)
    if clicked:
        state.scheduler().submit(comparison_job(report, dataset, cache_dir))
        st.rerun()  # the button, the reason and the progress all show the new comparison


def render_outcome(snap: JobSnapshot) -> None:
    if snap.status in ("stopped", "cancelled"):
        st.info(STOPPED, icon=":material/stop_circle:")
    elif snap.status == "failed":
        feedback.show_error(snap.failure)
    else:
        render_result(snap.result)


def render_result(result: AdvisorResult) -> None:
    """The recommendation with a button to adopt it, the ranked table, and what to beware."""
    best = result.recommended
    st.success(
        f"**Recommended: {escape_markdown(best)}.** {escape_markdown(result.reason)}",
        icon=":material/recommend:",
    )
    in_use = (st.session_state.get(state.CONFIG_KEY) or {}).get("backbone") == best
    st.button(
        f"Use {escape_markdown(best)}",
        type="primary",
        on_click=feedback.callback(use_backbone),
        args=(best,),
        disabled=in_use,
        help="The page below uses it already." if in_use else None,
        key="advisor_use",
    )
    st.dataframe(
        result.frame(),
        column_order=list(COLUMNS),
        column_config=COLUMNS,
        hide_index=True,
    )
    st.caption(
        f"{escape_markdown(result.caveat)} Measured in {result.seconds:.0f} s on "
        f"{result.num_classes} classes."
    )
    for warning in result.warnings:
        st.warning(escape_markdown(warning), icon=":material/warning:")
    if result.skipped:
        st.caption(
            "Not compared: "
            + "; ".join(escape_markdown(f"{s.backbone}: {s.reason}") for s in result.skipped)
        )


def use_backbone(name: str) -> None:
    """Makes ``name`` the saved backbone; the Model page's widgets start again from it."""
    state.adopt_settings(backbone=name, weights=None)  # a weights file belongs to the old backbone
