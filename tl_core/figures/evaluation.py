"""Figures of how a trained model does: the confusion matrix (whose cells can be picked),
per-class scores, and the top-k bars of one prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.common import plural
from tl_core.figures.style import (
    TRAIN_COLOR,
    TRAINABLE_COLOR,
    VAL_COLOR,
    fixed_axes,
    standard_layout,
)

# Trace name of the invisible markers laid over the confusion matrix: clicking one selects a
# cell, since Plotly reports no selection events for heatmap cells themselves.
CONFUSION_PICKER = "cells"


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
    return standard_layout(fig, "Confusion matrix (click a cell)", height=min(180 + 45 * n, 700))


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
    return standard_layout(fig, "Per-class scores", height=300)


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
    return fixed_axes(fig)
