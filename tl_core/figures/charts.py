"""Plotly figures built from plain data (DataFrames, lists, job snapshots).

Each builder returns a ``plotly.graph_objects.Figure`` and touches no UI framework, so the
app can render it anywhere and tests can check its traces without a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.common import format_accuracy, plural, wilson_interval

TRAIN_COLOR = "#4C78A8"
VAL_COLOR = "#F58518"
FROZEN_COLOR = "#BAB0AC"
TRAINABLE_COLOR = "#54A24B"
LATEST_BATCH_MARKER_SIZE = 7  # the dot on the live loss line's newest point
# Trace name of the invisible markers laid over the confusion matrix: clicking one selects a
# cell, since Plotly reports no selection events for heatmap cells themselves.
CONFUSION_PICKER = "cells"


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    )
    return fig


def _history_frame(history: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    return frame.sort_values("epoch") if "epoch" in frame else frame


STATIC_CHART_CONFIG: dict[str, Any] = {"displayModeBar": False}
"""Plotly config for a chart that only shows facts (no zoom, pan or download bar)."""


def _fixed(fig: go.Figure) -> go.Figure:
    """Turns off zooming and panning: a diagram of counts has nothing to explore."""
    fig.update_xaxes(fixedrange=True)
    fig.update_yaxes(fixedrange=True)
    fig.update_layout(dragmode=False)
    return fig


def class_counts_figure(counts: Mapping[str, int] | pd.Series) -> go.Figure:
    """Images per class as bars, in the order given (a fixed diagram: no zoom)."""
    series = pd.Series(counts, dtype="int64")
    fig = go.Figure(
        go.Bar(
            x=[str(label) for label in series.index],
            y=series.to_list(),
            text=series.to_list(),
            textposition="auto",
            marker_color=TRAIN_COLOR,
            name="images",
        )
    )
    fig.update_xaxes(title="class", type="category")
    fig.update_yaxes(title="images", rangemode="tozero")
    return _fixed(_layout(fig, "Images per class", height=300))


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
    frame = _history_frame(history)
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
    return _layout(fig, "Loss")


def accuracy_figure(
    history: pd.DataFrame | Iterable[Mapping[str, Any]], num_val_images: int | None = None
) -> go.Figure:
    """Training and validation accuracy per epoch, on a 0-100 % axis.

    Args:
        history: Per-epoch rows with ``epoch`` and the accuracy columns.
        num_val_images: The validation set's size; given, each validation point carries its
            95 % Wilson interval as an error bar and says how many images it rests on.
    """
    frame = _history_frame(history)
    fig = go.Figure()
    for column, name, color in (
        ("train_accuracy", "training", TRAIN_COLOR),
        ("val_accuracy", "validation", VAL_COLOR),
    ):
        if column not in frame:
            continue
        extra: dict[str, Any] = {}
        if column == "val_accuracy" and num_val_images:
            extra = _interval_bars(list(frame[column]), num_val_images, color)
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
    fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, "Accuracy")


def _interval_bars(accuracies: list[float], total: int, color: str) -> dict[str, Any]:
    """Scatter settings that draw each accuracy's 95 % Wilson interval and name its sample."""
    bounds = [wilson_interval(round(value * total), total) for value in accuracies]
    return dict(
        error_y=dict(
            type="data",
            symmetric=False,
            array=[high - value for value, (_, high) in zip(accuracies, bounds, strict=True)],
            arrayminus=[value - low for value, (low, _) in zip(accuracies, bounds, strict=True)],
            color=color,
            thickness=1,
        ),
        text=[format_accuracy(value, total) for value in accuracies],
        hovertemplate="epoch %{x}<br>%{text}<extra>validation</extra>",
    )


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
    each stage of gradual unfreezing begins."""
    history = snapshot.history
    history = history.to_dict("records") if isinstance(history, pd.DataFrame) else list(history)
    return (
        _mark_stages(loss_figure(snapshot.batch_losses, history), history),
        _mark_stages(accuracy_figure(history, getattr(snapshot, "num_val_images", None)), history),
    )


def confusion_figure(confusion: pd.DataFrame) -> go.Figure:
    """A confusion-matrix heatmap whose cells can be picked.

    Args:
        confusion: Counts; index = true label, columns = predicted label.

    Returns:
        A heatmap with the counts written in the cells, plus transparent square markers on
        every cell (trace ``CONFUSION_PICKER``) that a click selects; a selected cell is
        outlined. Rows read top to bottom in label order.
    """
    true_labels = [str(v) for v in confusion.index]
    predicted_labels = [str(v) for v in confusion.columns]
    counts = confusion.to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=predicted_labels,
            y=true_labels,
            colorscale="Blues",
            text=counts,
            texttemplate="%{text}",
            customdata=[[plural(int(count), "image") for count in row] for row in counts],
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata}<extra></extra>",
            showscale=False,
        )
    )
    cells = [
        (t, p, int(counts[i, j]))
        for i, t in enumerate(true_labels)
        for j, p in enumerate(predicted_labels)
    ]
    fig.add_trace(
        go.Scatter(
            x=[p for _, p, _ in cells],
            y=[t for t, _, _ in cells],
            customdata=[[t, p] for t, p, _ in cells],
            mode="markers",
            name=CONFUSION_PICKER,
            marker=dict(
                symbol="square-open", size=28, opacity=0, line=dict(width=3, color="#E45756")
            ),
            selected=dict(marker=dict(opacity=1)),
            unselected=dict(marker=dict(opacity=0)),
            hovertemplate="true %{y}<br>predicted %{x}<br>click to see the images<extra></extra>",
            showlegend=False,
        )
    )
    n = max(len(true_labels), 1)
    fig.update_xaxes(title="predicted", type="category", side="bottom")
    fig.update_yaxes(title="true", type="category", autorange="reversed")
    fig.update_layout(clickmode="event+select", dragmode=False)
    return _layout(fig, "Confusion matrix (click a cell)", height=min(180 + 45 * n, 700))


def confusion_cell_from_selection(selection: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The ``(true label, predicted label)`` of the cell picked in a confusion figure, if any.

    Args:
        selection: The ``selection`` part of a chart selection event: ``{"points": [...]}``,
            each point with ``x`` (predicted) and ``y`` (true).
    """
    points = (selection or {}).get("points") or []
    for point in points:
        x, y = point.get("x"), point.get("y")
        if x is not None and y is not None:
            return str(y), str(x)
    return None


def per_class_figure(per_class: pd.DataFrame) -> go.Figure:
    """Grouped bars of precision, recall and F1 for each class."""
    fig = go.Figure()
    for column, color in (
        ("precision", TRAIN_COLOR),
        ("recall", VAL_COLOR),
        ("f1", TRAINABLE_COLOR),
    ):
        fig.add_trace(
            go.Bar(
                x=per_class["label"].astype(str),
                y=per_class[column],
                name=column,
                marker_color=color,
                hovertemplate="%{x}: %{y:.1%}<extra>" + column + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return _layout(fig, "Per-class scores", height=300)


def top_k_figure(predictions: Sequence[tuple[str, float]]) -> go.Figure:
    """Horizontal bars of a top-k prediction, most probable on top, on a fixed 0-100 % axis."""
    labels = [str(label) for label, _ in predictions]
    probabilities = [float(p) for _, p in predictions]
    fig = go.Figure(
        go.Bar(
            x=probabilities,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in probabilities],
            textposition="auto",
            marker_color=[VAL_COLOR] + [TRAIN_COLOR] * (len(labels) - 1),
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    # The whole 0-100 % range, whatever the top value, so bars compare across images.
    fig.update_xaxes(title="probability", range=[0, 1], tickformat=".0%", dtick=0.25)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    fig.update_layout(height=100 + 32 * max(len(labels), 1), margin=dict(l=10, r=20, t=10, b=10))
    return _fixed(fig)


def freeze_figure(groups: Sequence[Any], frozen: int) -> go.Figure:
    """Layer groups as bars of their parameter count, grey when frozen, green when trained.

    Each bar is labelled with its count (e.g. "1.2M"); the diagram is fixed (no zoom).

    Args:
        groups: Layer groups in network order, each with ``name`` and ``num_params``.
        frozen: How many leading groups are frozen.
    """
    names = [f"{i}. {g.name}" for i, g in enumerate(groups)]
    sizes = [int(g.num_params) for g in groups]
    is_frozen = [i < frozen for i in range(len(groups))]
    fig = go.Figure(
        go.Bar(
            x=sizes,
            y=names,
            orientation="h",
            marker_color=[FROZEN_COLOR if f else TRAINABLE_COLOR for f in is_frozen],
            customdata=["frozen" if f else "trains" for f in is_frozen],
            texttemplate="%{x:.2s}",
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:,} parameters (%{customdata})<extra></extra>",
        )
    )
    # A log axis keeps small early groups visible beside large late ones; one tick per power
    # of ten, written short (1k, 10k, 1M), instead of Plotly's crowded 2-5-10 minor labels.
    spread = sizes and min(sizes) > 0 and max(sizes) / min(sizes) > 100
    ticks = dict(type="log", dtick=1) if spread else dict(type="linear")
    fig.update_xaxes(title="parameters", tickformat="~s", **ticks)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    fig.update_layout(
        height=110 + 26 * max(len(groups), 1),
        margin=dict(l=10, r=40, t=40, b=10),
        title="Layer groups (grey = frozen, green = trains)",
    )
    return _fixed(fig)


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
        frame = _history_frame(history)
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
    return _layout(fig, OVERLAY_TITLES.get(column, column.replace("_", " ")))


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
        extra = _interval_bars(accuracies, totals.pop(), VAL_COLOR)
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
    return _layout(fig, "Accuracy and training time by freeze depth", height=360)


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
    return _layout(fig, "Learning-rate finder")
