"""A freeze-depth sweep's result: one row per depth with what its run measured, the best depth,
and what the sweep found in words. sweep.json holds it (read and written through
``tl_core.runs.groups``); ``tl_core.analysis.sweep`` trains the runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.common import format_accuracy, plural, wilson_interval
from tl_core.config import FreezeDepth
from tl_core.runs import SWEEP_KIND, read_group_file, write_group_file

# Row statuses besides a run's own ("completed", "stopped", "failed").
PENDING, RUNNING, NOT_RUN = "pending", "running", "not run"
# A mid-depth dip smaller than this (in accuracy) is too small to call a pattern.
MIN_DIP = 0.02


@dataclass(frozen=True)
class SweepRow:
    """One freeze depth of a sweep and what its run measured.

    Attributes:
        freeze: The depth as given to training: a number of groups, or "all".
        frozen_groups: How many leading layer groups it freezes.
        run: The run folder's name inside the sweep folder; None while it has none (not run
            yet, or its training failed before writing anything).
        best_val_accuracy: The run's best validation accuracy (0..1), None before an epoch.
        seconds: Time the run took, pauses left out; 0 for a depth not run.
        status: "pending", "running", "completed", "stopped", "failed" or "not run".
        trainable_params: Parameters that trained (known once the run has started).
        num_val_images: Validation images the accuracy is measured on.
        error: What went wrong, for a failed run.
    """

    freeze: str
    frozen_groups: int
    run: str | None = None
    best_val_accuracy: float | None = None
    seconds: float = 0.0
    status: str = PENDING
    trainable_params: int | None = None
    num_val_images: int | None = None
    error: str | None = None

    @property
    def folder_name(self) -> str:
        return f"freeze-{self.freeze}"

    @property
    def label(self) -> str:
        """The depth's name in lists of runs and jobs: "freeze 2"."""
        return FreezeDepth.parse(self.freeze).label

    @property
    def accuracy_text(self) -> str:
        """The best validation accuracy with its 95 % interval and image count, or "–"."""
        if self.best_val_accuracy is None:
            return "–"
        if not self.num_val_images:
            return f"{self.best_val_accuracy:.1%}"
        return format_accuracy(self.best_val_accuracy, self.num_val_images)

    def to_dict(self) -> dict[str, Any]:
        """The row as sweep.json stores it: the shared keys first, then the details."""
        return {
            "freeze": self.freeze,
            "run": self.run,
            "best_val_accuracy": self.best_val_accuracy,
            "seconds": round(self.seconds, 3),
            "frozen_groups": self.frozen_groups,
            "status": self.status,
            "trainable_params": self.trainable_params,
            "num_val_images": self.num_val_images,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepRow:
        return cls(
            freeze=str(data["freeze"]),
            frozen_groups=int(data.get("frozen_groups", 0)),
            run=data.get("run"),
            best_val_accuracy=data.get("best_val_accuracy"),
            seconds=float(data.get("seconds") or 0.0),
            status=str(data.get("status", "completed")),
            trainable_params=data.get("trainable_params"),
            num_val_images=data.get("num_val_images"),
            error=data.get("error"),
        )


def best_row(rows: Iterable[SweepRow]) -> SweepRow | None:
    """The completed row with the highest best validation accuracy.

    Ties (the same accuracy) go to the row with fewer trainable parameters, then to the
    shorter training time: at equal accuracy the cheaper, less flexible model is the safer
    choice. Stopped and failed runs do not compete: their accuracy comes from fewer epochs.
    """
    done = [r for r in rows if r.status == "completed" and r.best_val_accuracy is not None]
    if not done:
        return None
    return min(
        done,
        key=lambda r: (
            -round(r.best_val_accuracy, 9),
            math.inf if r.trainable_params is None else r.trainable_params,
            r.seconds,
        ),
    )


def _meaning(row: SweepRow, groups: int, pretrained: bool) -> str:
    if not pretrained:
        return (
            "the backbone started from random weights here, so frozen layers hold random "
            "features, not transferred ones."
        )
    if row.frozen_groups >= groups:
        return (
            "the pretrained features already tell your classes apart, and this is the "
            "fastest setting to train."
        )
    if row.frozen_groups == 0:
        return (
            "your images needed every layer to adapt, as happens when they look unlike the "
            "photos the backbone learned from, or when there are many of them."
        )
    return (
        "the early layers' general features (edges, textures) transfer as they are, while "
        "the later layers had to adapt to your images."
    )


def _labels(rows: Sequence[SweepRow]) -> str:
    names = [r.freeze for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass
class SweepResult:
    """A sweep's rows in depth order (fewest frozen groups first) and what they say.

    Attributes:
        path: The sweep folder.
        backbone: The backbone every run used.
        pretrained: Whether the runs started from pretrained weights.
        num_backbone_groups: Layer groups before the head ("all" freezes this many).
        rows: One row per depth, in depth order.
    """

    path: Path
    backbone: str
    pretrained: bool
    num_backbone_groups: int
    rows: list[SweepRow] = field(default_factory=list)

    @property
    def best(self) -> str | None:
        """The freeze depth of the best row (see :func:`best_row`), or None."""
        row = best_row(self.rows)
        return row.freeze if row else None

    @property
    def failed(self) -> list[SweepRow]:
        return [r for r in self.rows if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """sweep.json's content."""
        return {
            "kind": SWEEP_KIND,
            "rows": [r.to_dict() for r in self.rows],
            "best": self.best,
            "backbone": self.backbone,
            "pretrained": self.pretrained,
            "num_backbone_groups": self.num_backbone_groups,
        }

    @classmethod
    def from_dict(cls, path: str | Path, data: Mapping[str, Any]) -> SweepResult:
        rows = [SweepRow.from_dict(r) for r in data.get("rows", [])]
        return cls(
            path=Path(path),
            backbone=str(data.get("backbone", "")),
            pretrained=bool(data.get("pretrained", True)),
            num_backbone_groups=int(
                data.get("num_backbone_groups", max((r.frozen_groups for r in rows), default=0))
            ),
            rows=rows,
        )

    def write(self) -> None:
        write_group_file(self.path, SWEEP_KIND, self.to_dict())

    def dip(self) -> SweepRow | None:
        """A depth whose accuracy falls clearly below both a shallower and a deeper one.

        Yosinski et al. (2014) saw this when they froze the lower half of a network: layers
        that only work together were split, and the trained top layers could not re-learn
        what their frozen partners expected. The deepest such dip is returned, if any.
        """
        measured = [
            r for r in self.rows if r.status == "completed" and r.best_val_accuracy is not None
        ]
        dips = []
        for i in range(1, len(measured) - 1):
            accuracy = measured[i].best_val_accuracy
            shallower = max(r.best_val_accuracy for r in measured[:i])
            deeper = max(r.best_val_accuracy for r in measured[i + 1 :])
            depth = min(shallower, deeper) - accuracy
            # At least one validation image, and enough not to be rounding noise.
            one_image = 1 / measured[i].num_val_images if measured[i].num_val_images else 0
            if depth >= max(MIN_DIP, one_image):
                dips.append((depth, measured[i]))
        return max(dips, key=lambda d: d[0])[1] if dips else None

    def summary(self) -> str:
        """What the sweep found, in plain words: the best depth, what it means, and caveats."""
        groups = self.num_backbone_groups
        best = best_row(self.rows)
        sentences = []
        if best is None:
            sentences.append("No depth finished training, so there is no best depth yet.")
        else:
            depth = FreezeDepth.count(best.frozen_groups).headline(groups)
            sentences.append(
                f"{depth} did best, with {best.accuracy_text} validation accuracy: "
                f"{_meaning(best, groups, self.pretrained)}"
            )
            close = self._within_interval(best)
            if close:
                sentences.append(
                    f"Freeze {_labels(close)} scored within its 95 % interval, so on "
                    f"{plural(best.num_val_images or 0, 'validation image')} the difference may "
                    "be chance; between close results, the one with more groups frozen trains "
                    "faster and is less likely to overfit."
                )
        dip = self.dip()
        if dip is not None:
            sentences.append(
                f"Accuracy dips at mid-depth (freeze {dip.freeze}: {dip.best_val_accuracy:.1%}, "
                "below both shallower and deeper settings): layers that only work together were "
                "split there, so the frozen ones hand on features the trained ones were not "
                "made for. It does not mean those layers' features are bad."
            )
        not_run = [r for r in self.rows if r.status == NOT_RUN]
        if not_run:
            sentences.append(f"Not run (the sweep was stopped): freeze {_labels(not_run)}.")
        if self.failed:
            sentences.append(f"Failed: freeze {_labels(self.failed)} (see each run's error).")
        return " ".join(sentences)

    def _within_interval(self, best: SweepRow) -> list[SweepRow]:
        if not best.num_val_images:
            return []
        low, high = wilson_interval(
            round(best.best_val_accuracy * best.num_val_images), best.num_val_images
        )
        return [
            r
            for r in self.rows
            if r is not best
            and r.status == "completed"
            and r.best_val_accuracy is not None
            and low <= r.best_val_accuracy <= high
        ]


def read_sweep(path: str | Path) -> SweepResult:
    """Reads a sweep folder's sweep.json.

    Raises:
        RunError: sweep.json is missing, not valid JSON, or not a JSON object.
    """
    return SweepResult.from_dict(path, read_group_file(path, SWEEP_KIND))
