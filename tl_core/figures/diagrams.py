"""Fixed diagrams of counts (no zoom, nothing to explore): images per class, and the layer
groups a training freezes or trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tl_core.figures.style import (
    FROZEN_COLOR,
    TRAIN_COLOR,
    TRAINABLE_COLOR,
    fixed_axes,
    standard_layout,
)


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
    return fixed_axes(standard_layout(fig, "Images per class", height=300))


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
    return fixed_axes(fig)
