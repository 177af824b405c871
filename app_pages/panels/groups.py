"""The Train page's experiments: launching a transfer check or a freeze-depth sweep, following
its queue of runs live, and reading what it found (with the best depth adopted in one click).

A group job trains its runs one after another in the background like any training job
(``tl_core.jobs.training_job``); this module only draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.ui import feedback, state
from tl_core.analysis import (
    SweepResult,
    default_depths,
    read_sweep,
    read_transfer,
    recipe_notes,
    resolve_depths,
)
from tl_core.common import TLStudioError, escape_markdown, format_accuracy, plural
from tl_core.config import SWEEP_EPOCHS, FreezeDepth, TrainConfig
from tl_core.figures import STATIC_CHART_CONFIG, overlay_figure, sweep_figure
from tl_core.jobs import KIND_NAMES, SWEEP, TRANSFER_CHECK, JobSnapshot

SWEEP_DEPTHS_KEY = "sweep_depths"
SWEEP_EPOCHS_KEY = "sweep_epochs"


@st.cache_data(show_spinner=False)
def backbone_groups(backbone: str) -> int:
    """Layer groups before the head (what a freeze depth counts), by architecture."""
    groups, _ = resolve_depths(backbone, ["all"])
    return groups


def start(
    config: TrainConfig, kind: str, depths: Sequence[str] | None = None, nproc: int = 1
) -> None:
    job = state.scheduler().start(config, kind, depths, nproc)  # it runs now, or waits its turn
    st.session_state[state.JOB_KEY] = job.job_id
    st.rerun()  # the buttons, the live view and the sidebar all show the new job at once


def launchers(config: TrainConfig) -> None:
    """The two experiments, each explained in a sentence, with its button."""
    title = "Experiments: did transfer help? How deep to freeze?"
    with st.expander(title, icon=":material/science:"):
        left, right = st.columns(2, gap="large")
        with left:
            transfer_launcher(config)
        with right:
            sweep_launcher(config)


def transfer_launcher(config: TrainConfig) -> None:
    st.markdown("**Transfer check: did the pretrained weights help?**")
    epochs = plural(config.epochs, "epoch", "epochs")
    st.caption(
        f"Trains these settings twice on the same split ({epochs} "
        "each): with the pretrained weights, then from random weights. The gap between the two "
        "is what the pretraining bought on your images."
    )
    reason = None
    if not config.pretrained:
        reason = "Turn pretrained weights on (Model page): the check trains from scratch itself."
    if st.button("Run a transfer check", icon=":material/compare_arrows:", disabled=bool(reason)):
        start(config, TRANSFER_CHECK)
    if reason:
        st.caption(escape_markdown(reason))


def sweep_launcher(config: TrainConfig) -> None:
    st.markdown("**Freeze-depth sweep: how many layer groups to freeze?**")
    groups = backbone_groups(config.backbone)
    st.caption(
        f"Trains one short run per depth, from every layer trained (0) to only the head "
        f"(all {groups} groups frozen), and charts accuracy and time against the depth."
    )
    options = [str(count) for count in range(groups)] + ["all"]
    depths = st.multiselect(
        "Depths (frozen layer groups)",
        options,
        default=default_depths(groups),
        key=SWEEP_DEPTHS_KEY,
    )
    epochs = st.number_input(
        "Epochs per depth",
        1,
        100,
        min(SWEEP_EPOCHS, config.epochs),
        key=SWEEP_EPOCHS_KEY,
        help="Short runs are enough to compare the depths; train the chosen one longer after.",
    )
    reason = None
    if len(depths) < 2:
        reason = "Pick at least two depths to compare."
    ordered = sorted(depths, key=options.index)
    if st.button("Run a freeze sweep", icon=":material/stacked_line_chart:", disabled=bool(reason)):
        start(config.replace(epochs=int(epochs)), SWEEP, ordered)
    if reason:
        st.caption(escape_markdown(reason))


# ---------------------------------------------------------------------------- following a group


def _curves(snap: JobSnapshot) -> dict[str, tuple[dict, ...]]:
    """Each run's epochs by its label: the finished ones, then the one training now."""
    curves = {run.label: run.history for run in snap.finished_runs}
    if snap.is_active and snap.run_label and snap.history:
        curves[f"{snap.run_label} (training)"] = snap.history
    return curves


def render_runs_so_far(snap: JobSnapshot, key: str) -> None:
    """Every run of the group on shared axes: validation accuracy and loss by epoch."""
    curves = _curves(snap)
    if not curves:
        return
    left, right = st.columns(2)
    left.plotly_chart(
        overlay_figure(curves, "val_accuracy"), key=f"{key}_accuracy", config=STATIC_CHART_CONFIG
    )
    right.plotly_chart(
        overlay_figure(curves, "val_loss"), key=f"{key}_loss", config=STATIC_CHART_CONFIG
    )


def _read_sweep(snap: JobSnapshot) -> SweepResult | None:
    try:
        return read_sweep(snap.group_dir)
    except TLStudioError:
        return None  # not written yet (the first run is being set up)


def render_live(snap: JobSnapshot) -> None:
    """What a running group has measured so far, below the live view of its current run."""
    st.markdown(f"**{KIND_NAMES[snap.kind]}: every run so far**")
    render_runs_so_far(snap, "group_live")
    result = _read_sweep(snap) if snap.kind == SWEEP else None
    if result is not None and any(row.best_val_accuracy is not None for row in result.rows):
        st.plotly_chart(
            sweep_figure([row.to_dict() for row in result.rows], result.best),
            key="sweep_live",
            config=STATIC_CHART_CONFIG,
        )


# ---------------------------------------------------------------------------- what it found


def adopt_freeze(freeze: str) -> None:
    state.adopt_settings(mode="fine-tune", freeze=freeze)


def _saved_depth(settings: dict) -> FreezeDepth | None:
    """The freeze depth of the saved settings (None: none saved, or not a depth)."""
    try:
        return FreezeDepth.parse(settings.get("freeze"))
    except TLStudioError:
        return None


def render_sweep_outcome(snap: JobSnapshot) -> None:
    result = _read_sweep(snap)
    if result is None:
        st.info("The sweep wrote no results.", icon=":material/info:")
        return
    st.markdown(escape_markdown(result.summary()))
    st.plotly_chart(
        sweep_figure([row.to_dict() for row in result.rows], result.best),
        key="sweep_outcome",
        config=STATIC_CHART_CONFIG,
    )
    best = result.best
    if best is not None:
        settings = st.session_state.get(state.CONFIG_KEY) or {}
        # Depths are equal when they freeze the same groups ("none" and "0"); a gradual
        # recipe's freeze means something else (where unfreezing stops).
        in_use = (
            _saved_depth(settings) == FreezeDepth.parse(best) and settings.get("mode") != "gradual"
        )
        st.button(
            f"Use {FreezeDepth.parse(best).label} for training",
            type="primary",
            icon=":material/check:",
            on_click=feedback.callback(adopt_freeze),
            args=(best,),
            disabled=in_use,
            help="Your settings use it already."
            if in_use
            else "Sets the Model page's freeze depth; the number of epochs stays yours.",
            key="sweep_adopt",
        )
        if in_use:
            st.caption(f"Your settings freeze {escape_markdown(best)}: press Start training.")
    table = pd.DataFrame(
        {
            "freeze": row.freeze,
            "status": row.status,
            "best val accuracy": row.accuracy_text,
            "trainable parameters": row.trainable_params,
            "training time (s)": round(row.seconds, 1),
        }
        for row in result.rows
    )
    st.dataframe(table, hide_index=True)


def _signal_lines(signals: dict) -> list[str]:
    lines = []
    for measured in signals.values():
        if not isinstance(measured, dict) or "meaning" not in measured:
            continue
        skipped = f" Not measured: {measured['skipped']}" if "skipped" in measured else ""
        lines.append(f"- {escape_markdown(str(measured['meaning']) + skipped)}")
    return lines


def render_transfer_outcome(snap: JobSnapshot) -> None:
    try:
        result = read_transfer(snap.group_dir)
    except TLStudioError:
        st.info(
            "No comparison was made: both runs must finish for a transfer check to conclude.",
            icon=":material/info:",
        )
        return
    outcome, sentence = result.get("outcome"), escape_markdown(str(result.get("verdict")))
    if outcome == "gain":
        st.success(sentence, icon=":material/trending_up:")
    elif outcome == "negative":
        st.warning(sentence, icon=":material/trending_down:")
    else:
        st.info(sentence, icon=":material/balance:")
    images = result.get("num_val_images")
    if images:
        runs = {"pretrained": "With pretrained weights", "scratch": "From random weights"}
        for col, (key, label) in zip(st.columns(2), runs.items(), strict=True):
            col.metric(label, f"{result[key]:.1%}")
            col.caption(format_accuracy(result[key], images))
    lines = _signal_lines(result.get("signals") or {})
    if lines:
        st.markdown("**Why: how familiar your images look to the backbone**\n\n" + "\n".join(lines))
    for note in recipe_notes(snap.group_dir):
        st.caption(escape_markdown(note))


def render_outcome(snap: JobSnapshot) -> None:
    """What a finished (or stopped) group found, then its runs' curves side by side."""
    if snap.kind == SWEEP:
        render_sweep_outcome(snap)
    else:
        render_transfer_outcome(snap)
    render_runs_so_far(snap, "group_done")
    st.page_link(state.COMPARE_PAGE, label="Compare these runs", icon=":material/compare:")


def group_name(snap: JobSnapshot) -> str:
    return f"{KIND_NAMES[snap.kind]} {escape_markdown(Path(snap.group_dir).name)}"
