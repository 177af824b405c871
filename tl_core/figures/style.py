"""The look every figure shares: colours, the title and legend layout, fixed (no-zoom) axes, and
95 % interval bars on accuracies.

Each builder in ``tl_core.figures`` returns a ``plotly.graph_objects.Figure`` and touches no UI
framework, so the app can render it anywhere and tests can check its traces without a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.common import format_accuracy, wilson_interval

TRAIN_COLOR = "#4C78A8"
VAL_COLOR = "#F58518"
FROZEN_COLOR = "#BAB0AC"
TRAINABLE_COLOR = "#54A24B"


def standard_layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    )
    return fig


def history_frame(history: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    return frame.sort_values("epoch") if "epoch" in frame else frame


STATIC_CHART_CONFIG: dict[str, Any] = {"displayModeBar": False}
"""Plotly config for a chart that only shows facts (no zoom, pan or download bar)."""


def fixed_axes(fig: go.Figure) -> go.Figure:
    """Turns off zooming and panning: a diagram of counts has nothing to explore."""
    fig.update_xaxes(fixedrange=True)
    fig.update_yaxes(fixedrange=True)
    fig.update_layout(dragmode=False)
    return fig


def interval_bars(accuracies: list[float], total: int, color: str) -> dict[str, Any]:
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
