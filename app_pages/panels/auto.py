"""Find a good model for me: the automatic recipe search, from one button to the best run.

Before it starts: a budget (minutes) and the button. While it runs: the plan with an estimate
per step (made from this computer's measured speed), the step under way (step i of n, time
used of the budget), Pause and Stop, and each decision as it is taken. After: every decision
beside its evidence, what was not tried, and the best run, ready for Evaluate, Predict and
Export. The search itself is ``tl_core.auto``; this panel only draws its job's snapshots.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.panels import refusals
from app_pages.ui import feedback, queue, state
from tl_core.analysis import AUTO_SEARCH
from tl_core.auto import STEP_TITLES, SearchSettings, duration
from tl_core.common import escape_markdown
from tl_core.config import TrainConfig
from tl_core.data import is_multi_label
from tl_core.jobs import AUTO, Job, JobSnapshot
from tl_core.runs import WEIGHTS_FILE

AUTO_JOB_KEY = "auto_job_id"
BUDGET_KEY = "auto_budget_minutes"
BUTTON = "Find a good model for me"
DEFAULT_MINUTES = 10
EXPLANATION = (
    "Tries what an expert would try, in the time you give it: compares the backbones on your "
    "images, how many layers to keep frozen, the learning rate and, for small datasets, "
    "augmentation; then trains the winner as long as the time allows. Each choice is shown "
    "with the numbers behind it, and the best model is ready for Evaluate, Predict and Export."
)


def search_settings(config: TrainConfig, minutes: float) -> SearchSettings:
    """The search for the saved settings: it chooses backbone, freeze depth, learning rate,
    augmentation and epochs, and keeps the rest (device, batch size, image size, seed).

    With random weights asked for, only the chosen backbone is searched: the catalog's
    candidates would be pretrained, which the settings turned off.
    """
    return SearchSettings(
        data=config.data,
        budget_seconds=minutes * 60,
        base=config,
        backbones=None if config.pretrained else (config.backbone,),
    )


def _job(dataset: str) -> Job | None:
    scheduler = state.scheduler()
    job = scheduler.get(st.session_state.get(AUTO_JOB_KEY))
    return job or scheduler.latest([AUTO], dataset)


def render(dataset: str, config: TrainConfig) -> None:
    """The panel: the button, then the search's plan, progress, decisions and best run."""
    with st.container(border=True):
        st.markdown(f"**{BUTTON}**")
        st.caption(EXPLANATION)
        if is_multi_label(dataset):
            return refusals.refusals(AUTO_SEARCH)
        job = _job(dataset)
        if job is None or job.has_ended:
            _start_form(config)  # one search at a time: the button waits for the last to end
        if job is None:
            return
        if job.is_queued:
            return queue.waiting(job, "auto")
        if job.is_active:
            return _live(job.job_id)
        render_outcome(job.snapshot())


def _start_form(config: TrainConfig) -> None:
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    minutes = left.number_input(
        "Time budget (minutes)",
        min_value=1.0,
        max_value=24 * 60.0,
        value=float(DEFAULT_MINUTES),
        step=1.0,
        key=BUDGET_KEY,
        help="The whole search ends within this time, plus at most one training epoch.",
    )
    if right.button(BUTTON, type="primary", icon=":material/auto_awesome:"):
        job = state.scheduler().start_auto(search_settings(config, minutes))
        st.session_state[AUTO_JOB_KEY] = job.job_id
        st.rerun()
    if note := queue.start_note():
        st.caption(note)


@feedback.fragment(run_every=1.0)
def _live(job_id: str) -> None:
    """Redraws the running search every second; the whole page once when it ends."""
    job = state.scheduler().get(job_id)
    snap = job.snapshot()
    if not snap.is_active:
        st.rerun()
    render_live(job, snap)


def render_live(job: Job, snap: JobSnapshot) -> None:
    """The plan, the step under way, Pause and Stop, and the decisions so far."""
    live = snap.result or {}
    render_plan(live)
    if live.get("step"):
        index, total = live["step_index"], live["step_total"]
        share = (index - 1 + snap.run_progress) / max(total, 1)
        text = (
            f"Step {index} of {total}: {STEP_TITLES[live['step']]} · "
            f"{duration(live.get('used_seconds', 0))} of {duration(live['budget_seconds'])} used"
        )
        st.progress(min(1.0, share), text=text)
        doing = f"{live.get('run_label', '')}: {snap.activity}" if live.get("run_label") else ""
        st.caption(escape_markdown(doing or snap.activity))
    else:
        st.progress(0.0, text="Measuring this computer's speed with each backbone")
    if snap.status != "stopping":
        pause_col, stop_col, _ = st.columns([1, 1, 4])
        if snap.status in ("pausing", "paused"):
            pause_col.button(
                "Resume", icon=":material/play_arrow:", on_click=feedback.callback(job.resume)
            )
        else:
            pause_col.button(
                "Pause",
                icon=":material/pause:",
                on_click=feedback.callback(job.pause),
                key="auto_pause",
            )
        stop_col.button(
            "Stop",
            icon=":material/stop:",
            on_click=feedback.callback(job.stop),
            key="auto_stop",
            help="Stops the run under way and keeps the best run so far.",
        )
    render_decisions(live)


def render_plan(live: dict) -> None:
    lines = live.get("plan_lines")
    if not lines:
        return
    st.markdown("**The plan**, fitted to this computer's measured speed:")
    st.markdown("\n".join(f"- {escape_markdown(line.split('. ', 1)[1])}" for line in lines[:-1]))
    st.caption(escape_markdown(lines[-1]))


def render_decisions(live: dict) -> None:
    for step in live.get("steps") or []:
        st.markdown(f"**{escape_markdown(STEP_TITLES[step['step']])}**: ")
        st.markdown(escape_markdown(step["decision"]))
        if step["evidence"]:
            st.caption(" · ".join(escape_markdown(line) for line in step["evidence"]))


def render_outcome(snap: JobSnapshot) -> None:
    """How the search ended, its decisions with their evidence, and the best run."""
    live = snap.result or {}
    best = live.get("best")
    if snap.status == "failed":
        feedback.show_error(snap.failure)
    elif snap.status == "stopped":
        st.warning("Stopped: the best run so far is kept.", icon=":material/stop_circle:")
    elif best is not None:
        st.success(
            f"Found a model in {duration(live.get('used_seconds', 0))} of the "
            f"{duration(live['budget_seconds'])} budget.",
            icon=":material/check_circle:",
        )
    with st.expander("The plan it followed"):
        render_plan(live)
    render_decisions(live)
    for sentence in live.get("not_tried") or []:
        st.caption(f"Not tried: {escape_markdown(sentence)}")
    run = snap.result_run
    if best is None or run is None or not (Path(run) / WEIGHTS_FILE).is_file():
        return
    st.session_state[state.RUN_KEY] = run  # Evaluate, Predict and Export open it
    st.markdown(
        f"**Best run: {escape_markdown(Path(run).parent.name)}/{escape_markdown(best['run'])}** "
        f"({escape_markdown(best['backbone'])}, freeze {best['freeze']}, learning rate "
        f"{best['lr']:.0e}, augmentation {best['augment']}): validation accuracy "
        f"{best['val_accuracy']:.1%} (95 % CI {best['val_low']:.0%}–{best['val_high']:.0%})."
    )
    cols = st.columns(3)
    cols[0].page_link(state.EVALUATE_PAGE, label="Evaluate", icon=":material/analytics:")
    cols[1].page_link(state.PREDICT_PAGE, label="Predict", icon=":material/image_search:")
    cols[2].page_link(state.EXPORT_PAGE, label="Export", icon=":material/download:")
    st.caption("Every run of the search is one group on Compare.")
