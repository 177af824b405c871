"""Freeze-depth sweep: the same recipe trained at several freeze depths, one run after another.

A sweep answers "how many layer groups should stay frozen?" by measurement on the user's own
images. Every depth trains with the same data, split, seed and settings into a run folder of its
own, so the runs differ in one thing only. The sweep folder holds::

    DIR/freeze-0/, DIR/freeze-2/, DIR/freeze-all/ ...   one ordinary run folder per depth
    DIR/sweep.json                                      the rows below and the best depth
                                                        (``tl_core.analysis.sweep_result``)

sweep.json is rewritten after every change, so it is true at every moment: rows waiting their
turn say "pending", the one training says "running", and a stopped sweep leaves the rest as
"not run". While the sweep runs, the folder holds a lock (``tl_core.runs.locks``), so a reader can
tell a sweep that is still going from one whose process ended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tl_core.analysis.multilabel_support import SWEEP, require_single_label
from tl_core.analysis.sweep_result import NOT_RUN, PENDING, RUNNING, SweepResult, SweepRow
from tl_core.common import (
    JobControl,
    TLStudioError,
    TrainingObserver,
    UsageError,
    explain_failure,
    plural,
)
from tl_core.config import FreezeDepth, TrainConfig
from tl_core.models import create_model, layer_groups
from tl_core.runs import METRICS_FILE, RunWriter, read_json
from tl_core.training import train

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
            depth = FreezeDepth.parse(spec, groups)
            count = depth.resolve(groups)
        except TLStudioError:
            raise UsageError(
                f"Freeze depth {spec!r} cannot be swept: {backbone} has {groups} layer groups "
                f'before the head, so depths run from 0 to {groups} (or "all", "none").',
                "Give a comma-separated list such as 0,2,4,all.",
            ) from None
        label = str(depth.counted())
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
    require_single_label(SWEEP, config.data)
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
