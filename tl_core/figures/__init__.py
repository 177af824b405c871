"""Plotly figures for the pages.

Modules (each says what it holds in its own docstring):
    calibration, charts
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "calibration": ("reliability_figure",),
        "charts": (
            "STATIC_CHART_CONFIG",
            "class_counts_figure",
            "confusion_cell_from_selection",
            "confusion_figure",
            "freeze_figure",
            "lr_finder_figure",
            "overlay_figure",
            "per_class_figure",
            "stage_starts",
            "sweep_figure",
            "top_k_figure",
            "training_figures",
        ),
    },
)
