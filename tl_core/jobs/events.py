"""A trainer's events as lines of JSON, so a job in another process can be followed live.

A run on several GPUs trains in processes torchrun starts; the app follows it through the
events rank 0 writes on its standard output, one line each, replayed into the same observer a
job in a thread uses. The live view is then the same, batch by batch, whichever way it trains.
Lines without the prefix are ordinary output and are left alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TextIO

from tl_core.common import BatchStats, Progress, TrainingObserver
from tl_core.runs import MULTI_LABEL_METRIC

EVENT_PREFIX = "tl-studio-event "


@dataclass(frozen=True)
class PlanSummary:
    """What a job shows of a ``TrainingPlan``: enough to cross a process boundary."""

    device: str
    description: str
    warnings: tuple[str, ...]
    num_val_images: int
    caches_features: bool
    # What the run's "accuracy" measures: macro F1 for a multi-label run (see tl_core.runs).
    accuracy_metric: str = "accuracy"

    @classmethod
    def of(cls, plan) -> PlanSummary:
        # These import torch: only where a plan exists.
        from tl_core.common import describe_device
        from tl_core.training import distributed

        device = describe_device(plan.device)
        if (processes := distributed.world_size()) > 1:
            device = f"{processes} × {device}"  # one process per GPU, e.g. "4 × cuda (...)"
        return cls(
            device=device,
            description=plan.describe(),
            warnings=tuple(issue.message for issue in plan.warnings),
            num_val_images=plan.num_val_images,
            caches_features=plan.caches_features,
            accuracy_metric=(
                MULTI_LABEL_METRIC if getattr(plan, "multi_label", False) else "accuracy"
            ),
        )


def summary_of(plan) -> PlanSummary:
    """``plan`` as a summary, whether it is a ``TrainingPlan`` or a replayed summary."""
    return plan if isinstance(plan, PlanSummary) else PlanSummary.of(plan)


class EventWriter(TrainingObserver):
    """Writes every event as one prefixed JSON line, flushed at once so the reader sees it."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def _emit(self, event: str, **data: Any) -> None:
        self.stream.write(EVENT_PREFIX + json.dumps({"event": event, **data}) + "\n")
        self.stream.flush()

    def on_phase(self, message: str, phase: str | None = None) -> None:
        self._emit("phase", message=message, phase=phase)

    def on_plan(self, plan) -> None:
        self._emit("plan", **dataclasses.asdict(summary_of(plan)))

    def on_progress(self, progress: Progress) -> None:
        self._emit("progress", **dataclasses.asdict(progress))

    def on_batch(self, stats: BatchStats) -> None:
        self._emit("batch", **dataclasses.asdict(stats))

    def on_epoch(self, row: dict, improved: bool) -> None:
        self._emit("epoch", row=row, improved=improved)

    def on_pause(self, paused: bool) -> None:
        self._emit("pause", paused=paused)


def replay(line: str, observer: TrainingObserver) -> bool:
    """Calls ``observer`` with the event on ``line``.

    Returns:
        False when the line carries no event (ordinary output, or a line cut short by a
        crash), True when it was replayed.
    """
    if not line.startswith(EVENT_PREFIX):
        return False
    try:
        data = json.loads(line[len(EVENT_PREFIX) :])
        event = data.pop("event")
    except (ValueError, AttributeError, KeyError):
        return False
    if event == "phase":
        observer.on_phase(data["message"], data["phase"])
    elif event == "plan":
        observer.on_plan(PlanSummary(**{**data, "warnings": tuple(data["warnings"])}))
    elif event == "progress":
        observer.on_progress(Progress(**data))
    elif event == "batch":
        observer.on_batch(BatchStats(**data))
    elif event == "epoch":
        observer.on_epoch(data["row"], data["improved"])
    elif event == "pause":
        observer.on_pause(data["paused"])
    else:
        return False
    return True
