"""Figures that compare runs: one history column of several runs overlaid, and a freeze-depth
sweep's accuracy and training time by depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.figures.style import VAL_COLOR, history_frame, interval_bars, standard_layout

OVERLAY_TITLES = {
    "val_accuracy": "Validation accuracy",
    "val_loss": "Validation loss",
    "train_accuracy": "Training accuracy",
    "train_loss": "Training loss",
}


def overlay_figure(
    histories: Mapping[str, pd.DataFrame | Iterable[Mapping[str, Any]]],
    column: str = "val_accuracy",
) -> go.Figure:
    """One history column of several runs, one line per run, on shared axes.

    Args:
        histories: Per-epoch rows (``epoch`` and ``column``) of each run, by the run's name
            (the legend shows the names). A run without the column has no line.
        column: The history column to draw; an accuracy is shown on a 0-100 % axis.
    """
    accuracy = "accuracy" in column
    value = "%{y:.1%}" if accuracy else "%{y:.3f}"
    fig = go.Figure()
    for name, history in histories.items():
        frame = history_frame(history)
        if column not in frame or "epoch" not in frame:
            continue
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=frame[column],
                mode="lines+markers",
                name=str(name),
                # The name comes from the trace, never from the template: run names are typed.
                hovertemplate=f"%{{fullData.name}}<br>epoch %{{x}}: {value}<extra></extra>",
            )
        )
    fig.update_xaxes(title="epoch", rangemode="tozero")
    if accuracy:
        fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%")
    else:
        fig.update_yaxes(title=column.replace("_", " "), rangemode="tozero")
    return standard_layout(fig, OVERLAY_TITLES.get(column, column.replace("_", " ")))


SWEEP_TIME_COLOR = "#9D9D9D"
BEST_COLOR = "#E45756"


def sweep_figure(rows: Sequence[Mapping[str, Any]], best: str | None = None) -> go.Figure:
    """A freeze-depth sweep: validation accuracy and training time by frozen layer groups.

    Accuracy (left axis, with 95 % intervals when the rows give their validation image count)
    and training time in seconds (right axis, dashed) are drawn against the number of frozen
    groups; each tick names the depth as given ("0", "4", "all"). Depths without a measurement
    (not run, or failed before an epoch) have no point.

    Args:
        rows: sweep.json's rows, each with ``freeze``, ``frozen_groups``,
            ``best_val_accuracy`` and ``seconds`` (``num_val_images`` and ``status`` optional).
        best: The ``freeze`` of the row to mark as best (sweep.json's ``best``).
    """
    ordered = sorted(rows, key=lambda r: r["frozen_groups"])
    measured = [r for r in ordered if r.get("best_val_accuracy") is not None]
    timed = [r for r in ordered if r.get("status") not in ("pending", "not run")]
    fig = go.Figure()
    totals = {r.get("num_val_images") for r in measured}
    extra: dict[str, Any] = {}
    if measured and len(totals) == 1 and None not in totals:
        accuracies = [r["best_val_accuracy"] for r in measured]
        extra = interval_bars(accuracies, totals.pop(), VAL_COLOR)
        extra["hovertemplate"] = "freeze %{customdata}<br>%{text}<extra>validation</extra>"
    fig.add_trace(
        go.Scatter(
            x=[r["frozen_groups"] for r in measured],
            y=[r["best_val_accuracy"] for r in measured],
            customdata=[r["freeze"] for r in measured],
            mode="lines+markers",
            name="validation accuracy",
            line=dict(color=VAL_COLOR),
            marker=dict(size=9),
            **{"hovertemplate": "freeze %{customdata}: %{y:.1%}<extra>validation</extra>", **extra},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r["frozen_groups"] for r in timed],
            y=[r["seconds"] for r in timed],
            customdata=[r["freeze"] for r in timed],
            mode="lines+markers",
            name="training time",
            yaxis="y2",
            line=dict(color=SWEEP_TIME_COLOR, dash="dash"),
            hovertemplate="freeze %{customdata}: %{y:.1f} s<extra>training time</extra>",
        )
    )
    top = next((r for r in measured if r["freeze"] == best), None)
    if top is not None:
        fig.add_trace(
            go.Scatter(
                x=[top["frozen_groups"]],
                y=[top["best_val_accuracy"]],
                mode="markers+text",
                name="best",
                text=[f"best: freeze {top['freeze']}"],
                textposition="top center",
                marker=dict(symbol="star", size=18, color=BEST_COLOR),
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(
        title="layer groups frozen (0 = every layer trains)",
        tickvals=[r["frozen_groups"] for r in ordered],
        ticktext=[str(r["freeze"]) for r in ordered],
    )
    fig.update_layout(
        yaxis=dict(title="best validation accuracy", range=[0, 1.08], tickformat=".0%"),
        yaxis2=dict(
            title="training time (s)",
            overlaying="y",
            side="right",
            rangemode="tozero",
            showgrid=False,
        ),
    )
    return standard_layout(fig, "Accuracy and training time by freeze depth", height=360)
