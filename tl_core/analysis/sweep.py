"""Freeze-depth sweep: the same recipe trained at several freeze depths, one run after another.

A sweep answers "how many layer groups should stay frozen?" by measurement on the user's own
images. Every depth trains with the same data, split, seed and settings into a run folder of its
own, so the runs differ in one thing only. The sweep folder holds::

    DIR/freeze-0/, DIR/freeze-2/, DIR/freeze-all/ ...   one ordinary run folder per depth
    DIR/sweep.json                                      the rows below and the best depth

sweep.json is rewritten after every change, so it is true at every moment: rows waiting their
turn say "pending", the one training says "running", and a stopped sweep leaves the rest as
"not run". While the sweep runs, the folder holds a lock (``tl_core.runs.locks``), so a reader can
tell a sweep that is still going from one whose process ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tl_core.common import (
    JobControl,
    TLStudioError,
    TrainingObserver,
    UsageError,
    explain_failure,
    format_accuracy,
    plural,
    wilson_interval,
    write_json,
)
from tl_core.config import TrainConfig
from tl_core.models import create_model, layer_groups, parse_freeze
from tl_core.runs import METRICS_FILE, SWEEP_FILE, RunWriter, read_json
from tl_core.training import train

SWEEP_KIND = "sweep"
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


def _depth_words(row: SweepRow, groups: int) -> str:
    if row.frozen_groups >= groups:
        return f"Training only the head (all {groups} layer groups frozen)"
    if row.frozen_groups == 0:
        return "Fine-tuning every layer (no group frozen)"
    return f"Freezing the first {row.frozen_groups} of {groups} groups"


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
        write_json(self.path / SWEEP_FILE, self.to_dict())

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
            sentences.append(
                f"{_depth_words(best, groups)} did best, with {best.accuracy_text} "
                f"validation accuracy: {_meaning(best, groups, self.pretrained)}"
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
        RunError: sweep.json is missing or is not valid JSON.
    """
    path = Path(path)
    return SweepResult.from_dict(path, read_json(path / SWEEP_FILE))


# ---- depths ------------------------------------------------------------------------------------


def split_depths(text: str) -> list[str]:
    """``"0, 2,4,all"`` -> ``["0", "2", "4", "all"]`` (the CLI's comma-separated list)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def default_depths(groups: int, count: int = 5) -> list[str]:
    """Up to ``count`` depths spread evenly from full fine-tuning ("0") to head only ("all")."""
    counts = sorted({round(i * groups / (count - 1)) for i in range(count)})
    return [str(c) for c in counts[:-1]] + ["all"]


def resolve_depths(
    backbone: str, depths: Sequence[str] | None = None
) -> tuple[int, list[tuple[str, int]]]:
    """Checks freeze depths against a backbone's layer groups.

    Args:
        backbone: A timm model name (its architecture decides the groups).
        depths: "all", "none" or numbers of groups, in any order; None picks
            :func:`default_depths`.

    Returns:
        The number of layer groups before the head, and (label, frozen groups) pairs sorted
        from fewest to most frozen groups. Labels are canonical: "none" becomes "0",
        "03" becomes "3".

    Raises:
        UsageError: A depth is not understood, out of range, or given twice.
    """
    if depths is not None and not depths:
        raise UsageError(
            "No freeze depths were given.", "Give a comma-separated list such as 0,2,4,all."
        )
    # Layer groups depend on the architecture only: random weights give the same answer.
    model, _ = create_model(backbone, 2, pretrained=False)
    groups = len(layer_groups(model)) - 1
    resolved: dict[int, str] = {}
    for spec in default_depths(groups) if depths is None else depths:
        try:
            count = parse_freeze(spec, groups)
        except TLStudioError:
            raise UsageError(
                f"Freeze depth {spec!r} cannot be swept: {backbone} has {groups} layer groups "
                f'before the head, so depths run from 0 to {groups} (or "all", "none").',
                "Give a comma-separated list such as 0,2,4,all.",
            ) from None
        label = "all" if str(spec).strip().lower() == "all" else str(count)
        if count in resolved:
            raise UsageError(
                f"Freeze depths {resolved[count]!r} and {label!r} are the same "
                f"({plural(count, 'group')} frozen).",
                "Give each depth once.",
            )
        resolved[count] = label
    return groups, [(resolved[count], count) for count in sorted(resolved)]


# ---- running -----------------------------------------------------------------------------------


class SweepObserver(TrainingObserver):
    """Receives a sweep's events: the training events of each run, plus when runs start and end.

    Every method is optional.
    """

    def on_run_start(self, index: int, total: int, row: SweepRow) -> None:
        """The run of ``row`` (number ``index`` from 1, of ``total``) starts training."""

    def on_run_end(self, index: int, total: int, row: SweepRow) -> None:
        """The run of ``row`` ended; ``row`` says how (completed, stopped or failed)."""


class _RunObserver(TrainingObserver):
    """Passes one run's events on to the sweep's observer, and notes what the sweep needs:
    the run's plan (parameters that train, validation images) and the time spent paused."""

    def __init__(self, outer: TrainingObserver):
        self.outer = outer
        self.plan = None
        self.paused_seconds = 0.0
        self._paused_at: float | None = None

    def on_phase(self, message: str, phase: str | None = None) -> None:
        self.outer.on_phase(message, phase)

    def on_plan(self, plan) -> None:
        self.plan = plan
        self.outer.on_plan(plan)

    def on_progress(self, progress) -> None:
        self.outer.on_progress(progress)

    def on_batch(self, stats) -> None:
        self.outer.on_batch(stats)

    def on_epoch(self, row: dict, improved: bool) -> None:
        self.outer.on_epoch(row, improved)

    def on_pause(self, paused: bool) -> None:
        if paused:
            self._paused_at = time.monotonic()
        elif self._paused_at is not None:
            self.paused_seconds += time.monotonic() - self._paused_at
            self._paused_at = None
        self.outer.on_pause(paused)


def _measured(row: SweepRow, folder: Path, observer: _RunObserver, seconds: float) -> SweepRow:
    """``row`` with what its run folder and plan say: best accuracy, parameters, images."""
    plan = observer.plan
    best = None
    if (folder / METRICS_FILE).exists():
        best = read_json(folder / METRICS_FILE).get("best_val_accuracy")
    return replace(
        row,
        run=folder.name if folder.is_dir() else None,
        best_val_accuracy=best,
        seconds=max(0.0, seconds - observer.paused_seconds),
        trainable_params=plan.freeze.trainable_params if plan else None,
        num_val_images=plan.num_val_images if plan else None,
    )


def sweep(
    config: TrainConfig,
    out_dir: str | Path,
    depths: Sequence[str] | None = None,
    observer: TrainingObserver | None = None,
    control: JobControl | None = None,
    *,
    feature_cache: str | Path | None = None,
) -> SweepResult:
    """Trains ``config`` at each freeze depth, one run after another, into ``out_dir``.

    Every run uses ``config`` with only ``freeze`` changed: same data, split, seed and epochs.
    With augmentation "auto", a head-only depth trains on backbone features computed once.
    A depth whose training fails is recorded with its error and the sweep goes on, except when
    it failed before training began (the data or the backbone could not be loaded): that would
    fail at every depth, so the error is raised.

    Args:
        config: The recipe; its ``freeze`` is ignored.
        out_dir: A new (missing or empty) folder for the sweep.
        depths: Freeze depths, e.g. ``["0", "2", "4", "all"]`` (see :func:`resolve_depths`);
            None spreads a few from "0" to "all" (:func:`default_depths`).
        observer: Receives every run's training events; a :class:`SweepObserver` also hears
            when each run starts and ends.
        control: Pause/resume/stop. Stopping ends the current run as "stopped" and cancels
            the depths still waiting ("not run").
        feature_cache: Where a head-only depth finds and keeps backbone features (see
            ``tl_core.training.train``); None computes them afresh.

    Returns:
        The rows in depth order; sweep.json in ``out_dir`` holds the same.

    Raises:
        UsageError: A depth does not fit the backbone.
        RunError: ``out_dir`` holds files, or another process is writing to it.
    """
    groups, resolved = resolve_depths(config.backbone, depths)
    observer = observer or TrainingObserver()
    control = control or JobControl()
    events = observer if isinstance(observer, SweepObserver) else SweepObserver()
    # Claimed like a run folder: new or empty, and locked while the sweep writes into it.
    group = RunWriter.create(out_dir)
    result = SweepResult(
        path=group.path,
        backbone=config.backbone,
        pretrained=config.pretrained,
        num_backbone_groups=groups,
        rows=[SweepRow(freeze=label, frozen_groups=count) for label, count in resolved],
    )
    total = len(result.rows)
    kept = True
    try:
        result.write()
        for index, row in enumerate(result.rows):
            if control.stop_requested:
                break
            writer = RunWriter.create(result.path / row.folder_name)
            folder = writer.path
            result.rows[index] = row = replace(row, status=RUNNING, run=folder.name)
            result.write()
            events.on_run_start(index + 1, total, row)
            run_observer = _RunObserver(observer)
            started = time.monotonic()
            try:
                status = train(
                    config.replace(mode="fine-tune", freeze=row.freeze),
                    writer,
                    run_observer,
                    control,
                    feature_cache=feature_cache,
                )
                error = None
            except Exception as exc:
                status, error = "failed", explain_failure(exc)[0]
                if not folder.is_dir():  # nothing was trained: every depth would fail alike
                    result.rows[index] = replace(row, status="failed", run=None, error=error)
                    if not any(r.run for r in result.rows):
                        group.discard()  # nothing worth keeping was written
                        kept = False
                    raise
            measured = _measured(row, folder, run_observer, time.monotonic() - started)
            result.rows[index] = row = replace(measured, status=status, error=error)
            result.write()
            events.on_run_end(index + 1, total, row)
        return result
    finally:
        # Whatever ended the sweep (a stop, an error, Ctrl-C), the depths still waiting are
        # written as not run, and a run cut off by an interrupt as failed.
        result.rows = [
            replace(r, status=NOT_RUN)
            if r.status == PENDING
            else replace(r, status="failed")
            if r.status == RUNNING
            else r
            for r in result.rows
        ]
        if kept:
            result.write()
        group.close()
