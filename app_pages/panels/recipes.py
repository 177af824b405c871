"""The Model page's training recipe: the mode (with its freeze depth) and the learning-rate
finder.

Widget keys start with ``model_`` so that adopting settings (``state.adopt_settings``) makes
them read their defaults from the saved settings again.
"""

from __future__ import annotations

import streamlit as st

from app_pages.ui import feedback, queue, state
from tl_core.common import TLStudioError
from tl_core.config import (
    FEATURE_EXTRACTION,
    FINE_TUNE,
    FULL_FINE_TUNE,
    GRADUAL,
    FreezeDepth,
    TrainConfig,
)
from tl_core.figures import lr_finder_figure
from tl_core.jobs import LR_FIND, Job, JobSnapshot, lr_find_job
from tl_core.training import MODE_ADVICE, MODE_LABELS, LRFinderResult

FINDER_LABEL = "Find a learning rate"
FINDER_INTRO = (
    "A short trial run raises the head's learning rate from 1e-7 to 10 over 100 batches and "
    "watches the loss (Smith 2015, as fastai's lr_find runs it). The suggested rate lies "
    "where the loss falls fastest for longest. Nothing is kept: the model starts afresh when "
    "you train. Head-only recipes take seconds (features are computed once); others train "
    "on images, which takes longer."
)
BUSY_REASON = "The finder is under way: wait for it to finish, or stop it."
STOPPED = "Stopped: no rate was found."
RESULT_KEY = "lr_finder_result"  # (the settings swept, the curve) of the last finished sweep
# (the settings swept, the job's id) while the session's finder job waits or runs; not a
# "model_" key, which adopting settings would drop.
JOB_KEY = "lr_finder_job"
# Settings the sweep does not depend on: changing them keeps the finder's curve on show.
_NOT_SWEPT = ("lr", "epochs", "early_stopping_patience", "warmup_epochs")


def available_modes(num_backbone_groups: int) -> list[str]:
    """The modes a backbone with this many layer groups (before the head) can train in."""
    if num_backbone_groups == 0:
        return [FEATURE_EXTRACTION]
    # Fine-tuning only the top groups needs a group to freeze and one to train.
    top = [FINE_TUNE] if num_backbone_groups >= 2 else []
    return [FEATURE_EXTRACTION, *top, FULL_FINE_TUNE, GRADUAL]


def choose_mode(saved: TrainConfig, num_backbone_groups: int) -> tuple[str, FreezeDepth]:
    """The mode picker, with the freeze depth slider of the modes that take one.

    Returns:
        The mode and its freeze depth, for ``TrainConfig.replace``.
    """
    n = num_backbone_groups
    modes = available_modes(n)
    mode = st.radio(
        "Training mode",
        modes,
        index=modes.index(saved.mode) if saved.mode in modes else 0,
        format_func=MODE_LABELS.get,
        horizontal=True,
        key="model_mode",
    )
    st.caption(MODE_ADVICE[mode])
    try:
        saved_depth = saved.depth.resolve(n)
    except TLStudioError:  # saved for a backbone with more groups
        saved_depth = n
    if mode == FEATURE_EXTRACTION:
        return mode, FreezeDepth.parse("all")
    if mode == FULL_FINE_TUNE:
        return mode, FreezeDepth.count(0)
    if mode == FINE_TUNE:
        frozen = (
            st.slider(
                "Frozen layer groups (from the input)",
                1,
                n - 1,
                value=min(max(saved_depth, 1), n - 1),
                help=f"{n - 1} = only the top group trains with the head; 1 = all but the "
                "first group train.",
                key="model_frozen",
            )
            if n > 2  # a slider needs two ends
            else 1
        )
        return mode, FreezeDepth.count(frozen)
    frozen = (
        st.slider(
            "Layer groups still frozen at the end (from the input)",
            0,
            n - 1,
            value=min(saved_depth, n - 1) if saved.mode == GRADUAL else 0,
            help="0 = unfreeze down to the input. Each stage unfreezes the next group down.",
            key="model_gradual_frozen",
        )
        if n > 1
        else 0
    )
    return mode, FreezeDepth.count(frozen)


def _sweep_key(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_SWEPT}


def _finder_of(config: TrainConfig) -> tuple[dict | None, str | None]:
    """(the settings swept, the job's id) of the newest finder job that sweeps ``config``'s
    recipe on its dataset, while it waits or runs or once it has completed."""
    job = state.scheduler().latest((LR_FIND,), str(config.data))
    swept = _sweep_key(config)
    if job is None or job.config is None or _sweep_key(job.config) != swept:
        return None, None
    if job.has_ended and (job.snapshot().status != "completed" or RESULT_KEY in st.session_state):
        return None, None  # its outcome was shown already, or there is none to show
    return swept, job.job_id


def finder_job(config: TrainConfig) -> tuple[Job | None, JobSnapshot | None]:
    """This session's finder job while it waits or runs; once it has ended, None and its last
    snapshot (taken once: a completed sweep's curve moves to ``RESULT_KEY``)."""
    swept, job_id = st.session_state.get(JOB_KEY) or (None, None)
    if job_id is None:  # a fresh session (a reload): the finder of these settings, if any
        swept, job_id = _finder_of(config)
    job = state.scheduler().get(job_id)
    if job is None:  # cancelled before its turn, or never asked for
        st.session_state.pop(JOB_KEY, None)
        return None, None
    if not job.has_ended:
        st.session_state[JOB_KEY] = (swept, job_id)
        return job, None
    st.session_state.pop(JOB_KEY, None)
    snap = job.snapshot()
    if snap.status == "completed":
        st.session_state[RESULT_KEY] = (swept, snap.result)
    return None, snap


def lr_finder(config: TrainConfig) -> None:
    """The finder's panel: a button that queues it as a job, its progress, then its curve and
    the suggested rate."""
    job, ended = finder_job(config)
    shown = st.session_state.get(RESULT_KEY)
    current = shown is not None and shown[0] == _sweep_key(config)
    expanded = current or job is not None or ended is not None
    with st.expander("Which learning rate?", icon=":material/speed:", expanded=expanded):
        st.caption(FINDER_INTRO)
        button_col, reason_col = st.columns([2, 3], vertical_alignment="center")
        clicked = button_col.button(
            FINDER_LABEL, icon=":material/speed:", disabled=job is not None, key="model_lr_find"
        )
        if job is not None:
            reason_col.caption(BUSY_REASON)
        elif note := queue.start_note():
            reason_col.caption(note)
        if clicked and job is None:
            job = state.scheduler().submit(lr_find_job(config))  # runs now, or waits its turn
            st.session_state[JOB_KEY] = (_sweep_key(config), job.job_id)
            st.rerun()
        if job is not None and job.is_queued:
            queue.waiting(job, "lr_finder")
        elif job is not None:
            queue.live_analysis(job, "lr_finder")
        elif ended is not None and ended.status == "failed":
            feedback.show_error(ended.failure)
        elif ended is not None and ended.status != "completed":
            st.info(STOPPED, icon=":material/stop_circle:")
        if current:
            render_result(shown[1], config)


def render_result(result: LRFinderResult, config: TrainConfig) -> None:
    """The curve with the suggestion marked, and a button that makes it the head's rate."""
    st.plotly_chart(
        lr_finder_figure(result.lrs, result.losses, result.suggestion_index),
        key="lr_finder_figure",
    )
    if result.suggestion is None:
        st.warning(
            "No suggestion: the loss blew up within the first few batches. Try a smaller "
            "batch size, or check the images.",
            icon=":material/warning:",
        )
        return
    rate = float(f"{result.suggestion:.2g}")
    in_use = config.lr == rate
    st.button(
        f"Use {rate:.2g}",
        type="primary",
        on_click=feedback.callback(state.adopt_settings),
        kwargs={"lr": rate},
        disabled=in_use,
        help="The settings above use it already." if in_use else None,
        key="model_lr_use",
    )
    st.caption(
        f"Suggested: {rate:.2g} for the head (fastai's valley rule: about the middle of the "
        "longest stretch where the loss keeps falling)."
        + (" The loss diverged at the end of the curve." if result.diverged else "")
    )
