"""Train: start, pause and stop the background job, and watch it learn."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.panels import auto, groups, live, refusals, summary
from app_pages.ui import feedback, queue, state
from tl_core.analysis import SWEEP, TRANSFER_CHECK
from tl_core.common import TLStudioError, escape_markdown, gpu_count
from tl_core.config import TrainConfig
from tl_core.data import is_multi_label
from tl_core.jobs import TRAIN, JobSnapshot, TrainingJob
from tl_core.runs import WEIGHTS_FILE

st.title("Train")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def render_job(snap: JobSnapshot) -> None:
    """Progress, numbers and the two charts of one job snapshot."""
    st.progress(snap.progress, text=escape_markdown(snap.headline))
    if snap.plan:
        st.caption(escape_markdown(snap.plan))
    for warning in snap.warnings:  # what `tl-studio check` would say, shown before it matters
        st.warning(escape_markdown(warning), icon=":material/warning:")
    cols = st.columns(5)
    cols[0].metric("Epochs done", snap.epochs_done)
    best, metric = snap.best_val_accuracy, snap.accuracy_metric  # macro F1 for tags
    cols[1].metric(f"Best val. {metric}", "–" if best is None else f"{best:.1%}")
    if snap.best_accuracy_text:
        cols[1].caption(snap.best_accuracy_text)
    cols[2].metric(*snap.speed)  # labelled for the phase: backbone, head epochs or training
    # A group's later runs train other depths or weights, at other speeds: only this run's
    # time left is known.
    eta_label = "ETA (this run)" if snap.is_group else "ETA"
    if snap.status == "paused":
        eta = "on hold"
    else:
        eta = format_seconds(snap.eta_seconds) if snap.is_active else "–"
    cols[3].metric(eta_label, eta)
    cols[4].metric("Device", snap.device or "…")
    loss, accuracy = live.live_figures(snap)
    left, right = st.columns(2)
    left.plotly_chart(loss, key="loss_chart")
    right.plotly_chart(accuracy, key="accuracy_chart")


def render_controls(job: TrainingJob, snap: JobSnapshot) -> None:
    """The buttons that do something in the job's state (callbacks, so the page redraws
    with the new status at once)."""
    if snap.status == "stopping":
        return  # nothing left to ask for: the progress text says it is stopping
    pause_col, stop_col, _ = st.columns([1, 1, 4])
    if snap.status in ("pausing", "paused"):
        pause_col.button(
            "Resume", icon=":material/play_arrow:", on_click=feedback.callback(job.resume)
        )
    else:
        pause_col.button("Pause", icon=":material/pause:", on_click=feedback.callback(job.pause))
    stop_col.button("Stop", icon=":material/stop:", on_click=feedback.callback(job.stop))


@feedback.fragment(run_every=1.0)
def live_job(job_id: str) -> None:
    """Redraws from the job's snapshot every second while it runs."""
    job = state.scheduler().get(job_id)
    snap = state.job_snapshot(job)  # in a full run, the state the sidebar shows too
    if not snap.is_active:
        adopt_run(snap)
        st.rerun()  # once, so the whole page (sidebar included) shows the finished state
    render_controls(job, snap)
    render_job(snap)
    if snap.is_group:
        groups.render_live(snap)


def adopt_run(snap: JobSnapshot) -> bool:
    """Makes a finished job's run the current one, if it saved weights (for a group: its
    best depth, or the pretrained run of a transfer check)."""
    run = snap.result_run
    has_weights = run is not None and (Path(run) / WEIGHTS_FILE).is_file()
    if has_weights:
        state.choose_run(run)
    return has_weights


def render_outcome(snap: JobSnapshot) -> None:
    has_weights = adopt_run(snap)
    if snap.status == "failed":
        st.error(escape_markdown(snap.error or "Training failed."), icon=":material/error:")
        if snap.error_hint:
            st.info(escape_markdown(snap.error_hint), icon=":material/lightbulb:")
    elif snap.status == "stopped":
        if snap.is_group:
            saved = "The runs that finished are kept; the ones still waiting were not run."
        elif has_weights:
            saved = "The best weights so far are saved."
        else:
            saved = "No epoch finished, so nothing was saved."
        st.warning(f"Stopped. {saved}", icon=":material/stop_circle:")
    else:
        st.success(f"Finished: {escape_markdown(snap.name)}", icon=":material/check_circle:")
    if has_weights:
        cols = st.columns(3)
        cols[0].page_link(state.EVALUATE_PAGE, label="Evaluate", icon=":material/analytics:")
        cols[1].page_link(state.PREDICT_PAGE, label="Predict", icon=":material/image_search:")
        cols[2].page_link(state.EXPORT_PAGE, label="Export", icon=":material/download:")


def processes_to_use() -> int:
    """1, or every GPU when more than one is visible and the user asks for them all."""
    gpus = gpu_count()
    if gpus < 2:
        return 1
    use_all = st.toggle(
        f"Use all {gpus} GPUs",
        key="train_all_gpus",
        help=f"Trains in {gpus} processes, one per GPU, with PyTorch's DistributedDataParallel: "
        f"each step sees {gpus} batches.",
    )
    return gpus if use_all else 1


def render_start(config: TrainConfig) -> None:
    """The Start button and the experiments; while another job runs, a note that the job
    will wait its turn (the scheduler queues it)."""
    button_col, note_col = st.columns([1, 3], vertical_alignment="center")
    start = button_col.button("Start training", type="primary", icon=":material/rocket_launch:")
    if note := queue.start_note():
        note_col.caption(note)
    nproc = processes_to_use()
    if start:
        groups.start(config, TRAIN, nproc=nproc)
    if is_multi_label(config.data):  # the experiments compare accuracy over one class each
        refusals.refusals(SWEEP, TRANSFER_CHECK)
    else:
        groups.launchers(config)


dataset = st.session_state.get(state.DATASET_KEY)
if not dataset:
    feedback.empty_state("No dataset yet: choose one first.", state.DATA_PAGE, "Go to Data")
elif not state.has_settings():
    feedback.empty_state(
        "No model settings yet: pick a backbone first.", state.MODEL_PAGE, "Go to Model"
    )
else:
    try:
        config = state.train_config(dataset)
        st.caption(
            escape_markdown(
                f"{Path(dataset).name} · {config.backbone} · freeze {config.freeze} · "
                f"{config.epochs} epochs · batch {config.batch_size} · lr {config.lr:g}"
            )
        )
        render_start(config)
    except TLStudioError as error:
        feedback.show_error(error)
if dataset:  # the search picks the backbone itself: no model settings needed
    with feedback.safety_net():
        auto.render(dataset, state.train_config(dataset))

job = state.current_job()
if job is not None:
    snap = state.job_snapshot(job)
    if snap.is_queued:
        st.subheader(escape_markdown(snap.title))
    elif snap.is_group:
        st.subheader(groups.group_name(snap))
    else:
        st.subheader(f"Run {escape_markdown(snap.name)}")
    if snap.is_queued:
        queue.waiting(job, "train")
    elif snap.is_active:
        live_job(job.job_id)
    else:
        render_outcome(snap)
        if snap.is_group:
            groups.render_outcome(snap)
        else:
            render_job(snap)
            if snap.result_run is not None:
                summary.class_recall(snap.result_run)
