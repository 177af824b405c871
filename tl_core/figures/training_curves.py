"""Training curves: loss and accuracy per epoch (the live job's and a finished run's), the
stages of gradual unfreezing marked on them, and the learning-rate finder's curve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.figures.style import (
    FROZEN_COLOR,
    TRAIN_COLOR,
    VAL_COLOR,
    history_frame,
    interval_bars,
    standard_layout,
)

LATEST_BATCH_MARKER_SIZE = 7  # the dot on the live loss line's newest point


def loss_figure(
    batch_losses: Sequence[tuple[float, float]],
    history: pd.DataFrame | Iterable[Mapping[str, Any]] = (),
) -> go.Figure:
    """Training loss per batch as a line, validation loss per epoch as markers.

    Args:
        batch_losses: ``(epoch as a float, loss)`` pairs, e.g. ``(2.35, 0.41)``.
        history: Per-epoch rows with ``epoch`` and ``val_loss`` (and optionally
            ``train_loss``, drawn when no per-batch losses are given, as for a finished run
            read from disk).
    """
    fig = go.Figure()
    frame = history_frame(history)
    if batch_losses:
        x, y = zip(*batch_losses, strict=True)
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=list(y),
                # A dot on the latest batch: a line of one point draws nothing, and the first
                # loss must show the moment it exists.
                mode="lines+markers",
                marker=dict(size=[0] * (len(x) - 1) + [LATEST_BATCH_MARKER_SIZE]),
                name="training (per batch)",
                line=dict(color=TRAIN_COLOR, width=1.5),
            )
        )
    elif "train_loss" in frame:
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=frame["train_loss"],
                mode="lines+markers",
                name="training (per epoch)",
                line=dict(color=TRAIN_COLOR),
            )
        )
    if "val_loss" in frame:
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=frame["val_loss"],
                mode="lines+markers",
                name="validation (per epoch)",
                line=dict(color=VAL_COLOR, dash="dot"),
                marker=dict(size=8),
            )
        )
    fig.update_xaxes(title="epoch", rangemode="tozero")
    fig.update_yaxes(title="loss", rangemode="tozero")
    return standard_layout(fig, "Loss")


def accuracy_figure(
    history: pd.DataFrame | Iterable[Mapping[str, Any]],
    num_val_images: int | None = None,
    metric: str = "accuracy",
) -> go.Figure:
    """Training and validation accuracy per epoch, on a 0-100 % axis.

    Args:
        history: Per-epoch rows with ``epoch`` and the accuracy columns.
        num_val_images: The validation set's size; given, each validation point carries its
            95 % Wilson interval as an error bar and says how many images it rests on.
        metric: What the accuracy columns measure, for the title and axis (a multi-label
            run's is macro F1 at threshold 0.5). The Wilson interval is a share of images
            right, so it is drawn for plain accuracy alone.
    """
    frame = history_frame(history)
    fig = go.Figure()
    for column, name, color in (
        ("train_accuracy", "training", TRAIN_COLOR),
        ("val_accuracy", "validation", VAL_COLOR),
    ):
        if column not in frame:
            continue
        extra: dict[str, Any] = {}
        if column == "val_accuracy" and num_val_images and metric == "accuracy":
            extra = interval_bars(list(frame[column]), num_val_images, color)
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=frame[column],
                mode="lines+markers",
                name=name,
                line=dict(color=color),
                marker=dict(size=8),
                **extra,
            )
        )
    fig.update_xaxes(title="epoch", rangemode="tozero")
    fig.update_yaxes(title=metric, range=[0, 1.02], tickformat=".0%")
    return standard_layout(fig, metric[:1].upper() + metric[1:])


def stage_starts(history: Iterable[Mapping[str, Any]]) -> list[tuple[float, int]]:
    """Where each stage after the first begins, as ``(epoch position, stage number)``.

    Gradual unfreezing records its ``stage`` in every epoch row; stage 2 starting with epoch 3
    begins at position 2 (the end of epoch 2). Rows without a stage (older runs) give none.
    """
    starts, previous = [], None
    for row in sorted(history, key=lambda row: row.get("epoch", 0)):
        stage = row.get("stage")
        if stage is not None and previous is not None and stage != previous:
            starts.append((float(row["epoch"]) - 1, int(stage)))
        previous = stage
    return starts


def _mark_stages(fig: go.Figure, history: Iterable[Mapping[str, Any]]) -> go.Figure:
    for position, stage in stage_starts(history):
        fig.add_vline(
            x=position,
            line=dict(color=FROZEN_COLOR, dash="dash", width=1),
            annotation_text=f"stage {stage}",
            annotation_position="top left",
        )
    return fig


def training_figures(snapshot: Any) -> tuple[go.Figure, go.Figure]:
    """The loss and accuracy figures of a job snapshot (``batch_losses``, ``history`` and,
    when known, ``num_val_images`` for the accuracy's intervals), with a dashed line where
    each stage of gradual unfreezing begins. The accuracy figure is named by the snapshot's
    ``accuracy_metric`` when it has one (macro F1 for a multi-label run)."""
    history = snapshot.history
    metric = getattr(snapshot, "accuracy_metric", "accuracy")
    history = history.to_dict("records") if isinstance(history, pd.DataFrame) else list(history)
    return (
        _mark_stages(loss_figure(snapshot.batch_losses, history), history),
        _mark_stages(
            accuracy_figure(history, getattr(snapshot, "num_val_images", None), metric), history
        ),
    )


def lr_finder_figure(
    lrs: Sequence[float], losses: Sequence[float], suggestion_index: int | None = None
) -> go.Figure:
    """The learning-rate finder's curve: smoothed loss against the rate, on a log axis, with
    the suggested rate marked."""
    fig = go.Figure(
        go.Scatter(
            x=list(lrs),
            y=list(losses),
            mode="lines",
            name="smoothed training loss",
            line=dict(color=TRAIN_COLOR),
            hovertemplate="learning rate %{x:.1e}<br>loss %{y:.3f}<extra></extra>",
        )
    )
    if suggestion_index is not None:
        fig.add_trace(
            go.Scatter(
                x=[lrs[suggestion_index]],
                y=[losses[suggestion_index]],
                mode="markers+text",
                name="suggested",
                text=[f"{lrs[suggestion_index]:.1e}"],
                textposition="top center",
                marker=dict(color=VAL_COLOR, size=12),
            )
        )
    fig.update_xaxes(title="learning rate (head)", type="log", exponentformat="e")
    fig.update_yaxes(title="loss")
    return standard_layout(fig, "Learning-rate finder")
