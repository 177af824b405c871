"""The live view's charts, built again only when what they show has changed.

The Train page redraws every second while a job runs, in the same process as the training
thread. Building Plotly figures is pure Python (its property validation: tens of milliseconds
per figure), and rebuilding them every second with nothing new put the first loss of a CPU run
8-16 s after Start on a 2-core machine, against about 5 s with them kept
(bench/first_point.py). The figures of each job are kept until a new batch or epoch arrives.
"""

from __future__ import annotations

import threading

import plotly.graph_objects as go

from tl_core.figures import training_figures
from tl_core.jobs import JobSnapshot

_lock = threading.Lock()
# Per job: what its figures show, and the figures. A handful of jobs per server process.
_figures: dict[str, tuple[tuple, tuple[go.Figure, go.Figure]]] = {}


def _shown(snap: JobSnapshot) -> tuple:
    """What the figures of a snapshot depend on: the run of a group, its batch losses (the
    list is thinned when it grows long, so its last point and length both count) and epochs."""
    return (
        snap.run_index,
        len(snap.batch_losses),
        snap.batch_losses[-1:],
        len(snap.history),
        snap.history[-1:],
        snap.num_val_images,
    )


def live_figures(snap: JobSnapshot) -> tuple[go.Figure, go.Figure]:
    """The loss and accuracy figures of a running job's snapshot (``training_figures``)."""
    shown = _shown(snap)
    with _lock:
        kept = _figures.get(snap.job_id)
    if kept is not None and kept[0] == shown:
        return kept[1]
    figures = training_figures(snap)
    with _lock:
        _figures[snap.job_id] = (shown, figures)
    return figures
