"""The reliability diagram: how often the model is right at each confidence, before and after
temperature scaling, against the diagonal of perfect calibration."""

from __future__ import annotations

import plotly.graph_objects as go

from tl_core.inference import CalibrationReport

BEFORE_COLOR = "#BAB0AC"
AFTER_COLOR = "#4C78A8"
PERFECT_COLOR = "#54A24B"


def reliability_figure(report: CalibrationReport) -> go.Figure:
    """Accuracy against mean confidence per confidence bin, raw and calibrated.

    Each point is one bin of images with similar top probabilities; its size and hover text
    give the bin's images. Points on the diagonal mean the stated confidence is the real
    accuracy; below it, the model is overconfident. The title states both errors (ECE).
    """
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfectly calibrated",
            line=dict(color=PERFECT_COLOR, dash="dash"),
            hoverinfo="skip",
        )
    )
    curves = [("before calibration", report.bins_before, report.ece_before, BEFORE_COLOR)]
    if report.calibration.fitted:
        curves.append(("after calibration", report.bins_after, report.ece_after, AFTER_COLOR))
    largest = max(1, int(report.bins_before.images.max()) if len(report.bins_before) else 1)
    for name, bins, ece, color in curves:
        filled = bins[bins.images > 0]
        fig.add_trace(
            go.Scatter(
                x=filled.confidence,
                y=filled.accuracy,
                mode="lines+markers",
                name=f"{name} (ECE {ece:.1%})",
                line=dict(color=color),
                marker=dict(size=6 + 14 * filled.images / largest, color=color),
                customdata=filled.images,
                hovertemplate=(
                    "confidence %{x:.0%}: right %{y:.0%} of %{customdata} images<extra>"
                    + name
                    + "</extra>"
                ),
            )
        )
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title="confidence (top probability)")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="share right")
    fig.update_layout(
        title=f"Reliability on {report.num_images} images",
        height=360,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    )
    return fig
