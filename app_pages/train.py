"""Train: start, pause and stop the background job, and watch it learn."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import _ui
from tl_core.errors import TLStudioError
from tl_core.figures import training_figures
from tl_core.jobs import JobSnapshot, TrainingJob
from tl_core.runs import WEIGHTS_FILE

st.title("Train")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def render_job(snap: JobSnapshot) -> None:
    """Progress, numbers and the two charts of one job snapshot."""
    st.progress(snap.progress, text=f"{snap.status.capitalize()} · {snap.message}")
    if snap.plan:
        st.caption(snap.plan)
    cols = st.columns(5)
    cols[0].metric("Epoch", f"{snap.epoch}/{snap.total_epochs}")
    best = snap.best_val_accuracy
    cols[1].metric("Best val. accuracy", "–" if best is None else f"{best:.1%}")
    ips = snap.images_per_second
    cols[2].metric("Images/s", "–" if ips is None else f"{ips:.0f}")
    cols[3].metric("ETA", format_seconds(snap.eta_seconds) if snap.is_active else "–")
    cols[4].metric("Device", snap.device or "…")
    loss, accuracy = training_figures(snap)
    left, right = st.columns(2)
    left.plotly_chart(loss, key="loss_chart")
    right.plotly_chart(accuracy, key="accuracy_chart")


def render_controls(job: TrainingJob, snap: JobSnapshot) -> None:
    pause_col, stop_col, _ = st.columns([1, 1, 4])
    if snap.status == "paused":
        if pause_col.button("Resume", icon=":material/play_arrow:"):
            job.resume()
    elif pause_col.button("Pause", icon=":material/pause:", disabled=snap.status == "stopping"):
        job.pause()
    if stop_col.button("Stop", icon=":material/stop:", disabled=snap.status == "stopping"):
        job.stop()


@st.fragment(run_every=1.0)
def live_job(job_id: str) -> None:
    """Redraws from the job's snapshot every second while it runs."""
    job = _ui.registry().get(job_id)
    snap = job.snapshot()
    if not snap.is_active:
        adopt_run(snap)
        st.rerun()  # once, so the whole page (sidebar included) shows the finished state
    render_controls(job, snap)
    render_job(snap)


def adopt_run(snap: JobSnapshot) -> bool:
    """Makes a finished job's run the current one, if it saved weights."""
    has_weights = (Path(snap.run_dir) / WEIGHTS_FILE).is_file()
    if has_weights:
        st.session_state[_ui.RUN_KEY] = snap.run_dir
    return has_weights


def render_outcome(snap: JobSnapshot) -> None:
    has_weights = adopt_run(snap)
    if snap.status == "failed":
        st.error(snap.error or "Training failed.", icon=":material/error:")
        if snap.error_hint:
            st.info(snap.error_hint, icon=":material/lightbulb:")
    elif snap.status == "stopped":
        st.warning(
            "Stopped. "
            + (
                "The best weights so far are saved."
                if has_weights
                else "No epoch finished, so nothing was saved."
            )
        )
    else:
        st.success(f"Finished: {Path(snap.run_dir).name}", icon=":material/check_circle:")
    if has_weights:
        cols = st.columns(3)
        cols[0].page_link(_ui.EVALUATE_PAGE, label="Evaluate", icon=":material/analytics:")
        cols[1].page_link(_ui.PREDICT_PAGE, label="Predict", icon=":material/image_search:")
        cols[2].page_link(_ui.EXPORT_PAGE, label="Export", icon=":material/download:")


dataset = st.session_state.get(_ui.DATASET_KEY)
if not dataset:
    _ui.empty_state("No dataset yet: choose one first.", _ui.DATA_PAGE, "Go to Data")
elif not _ui.has_settings():
    _ui.empty_state("No model settings yet: pick a backbone first.", _ui.MODEL_PAGE, "Go to Model")
else:
    try:
        config = _ui.train_config(dataset)
        st.caption(
            f"{Path(dataset).name} · {config.backbone} · freeze {config.freeze} · "
            f"{config.epochs} epochs · batch {config.batch_size} · lr {config.lr:g}"
        )
        if st.button("Start training", type="primary", icon=":material/rocket_launch:"):
            job = _ui.registry().start(config)
            st.session_state[_ui.JOB_KEY] = job.job_id
    except TLStudioError as error:
        _ui.show_error(error)

job = _ui.current_job()
if job is not None:
    snap = job.snapshot()
    st.subheader(f"Run {Path(snap.run_dir).name}")
    if snap.is_active:
        live_job(job.job_id)
    else:
        render_outcome(snap)
        render_job(snap)
