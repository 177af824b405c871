"""Plotly figures for the pages.

Modules (each says what it holds in its own docstring):
    calibration, comparisons, diagrams, evaluation, style, training_curves
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "calibration": ("reliability_figure",),
        "comparisons": (
            "overlay_figure",
            "sweep_figure",
        ),
        "diagrams": (
            "class_counts_figure",
            "freeze_figure",
        ),
        "evaluation": (
            "CONFUSION_PICKER",
            "confusion_cell_from_selection",
            "confusion_figure",
            "per_class_figure",
            "top_k_figure",
        ),
        "style": (
            "FROZEN_COLOR",
            "STATIC_CHART_CONFIG",
            "TRAINABLE_COLOR",
        ),
        "training_curves": (
            "LATEST_BATCH_MARKER_SIZE",
            "accuracy_figure",
            "loss_figure",
            "lr_finder_figure",
            "stage_starts",
            "training_figures",
        ),
    },
)
