"""Following long work on the terminal, and Ctrl-C: progress on stderr (a bar redrawn in place
on a terminal, a line now and then in logs, so stdout keeps the result alone), and the one
interrupt handler every long command uses (a first Ctrl-C stops cleanly, a second quits)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tl_core.common import TLStudioError, TrainingObserver

if TYPE_CHECKING:
    from tl_core.config import TrainConfig
    from tl_core.jobs import JobSnapshot


@contextlib.contextmanager
def interrupt_stops(
    stop: Callable[[], object],
    message: str = "Stopping after this batch",
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
    second_quits: bool = True,
) -> Iterator[None]:
    """While the block runs, Ctrl-C (and the other ``signals``) says ``message`` and calls
    ``stop``; with ``second_quits`` a second Ctrl-C quits at once (KeyboardInterrupt)."""

    def on_interrupt(*_):
        again = " (Ctrl-C again to quit at once)" if second_quits else ""
        print(f"\n{message}{again}...", file=sys.stderr)
        stop()
        if second_quits:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {number: signal.signal(number, on_interrupt) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _bar(interactive: bool, unit: str):
    from tqdm import tqdm

    return tqdm(total=1, unit=unit, disable=not interactive, dynamic_ncols=True, file=sys.stderr)


# ---- scanning and measuring --------------------------------------------------------------------


def scan_progress():
    """Scan progress on stderr: a line redrawn in place on a terminal, a line every 10 s in
    logs ("Scanning: 12,000/50,000 files, 40 s left"); stdout stays the report alone."""
    from tl_core.common import CountProgress

    if sys.stderr.isatty():

        def redraw(line: str, final: bool) -> None:
            print(f"\r{line}\x1b[K", end="\n" if final else "", file=sys.stderr, flush=True)

        return CountProgress("Scanning", "files", redraw)
    return CountProgress("Scanning", "files", lambda line, _: print(line, file=sys.stderr), 10.0)


def advisor_progress(stop) -> tuple:
    """A progress callback (a bar on a terminal, a line per backbone in logs) and its closer."""
    interactive = sys.stderr.isatty()
    bar = _bar(interactive, "img")
    announced: set[str] = set()

    def progress(done: int, total: int, message: str) -> None:
        if stop.is_set():
            return
        bar.total, bar.n = total, done
        bar.set_description(message[:48], refresh=False)
        bar.refresh()
        backbone = message.split(":")[0]
        if not interactive and backbone not in announced:
            announced.add(backbone)
            print(f"Measuring {backbone}...", file=sys.stderr)

    return progress, bar.close


def measured_with_progress(measure: Callable):
    """Runs ``measure(progress, stop)`` (the advisor, the label check) with its progress on
    stderr; Ctrl-C stops it after the current batch."""
    import threading

    stop = threading.Event()
    progress, close = advisor_progress(stop)
    try:
        with interrupt_stops(stop.set):
            return measure(progress, stop)
    finally:
        close()


# ---- training jobs -----------------------------------------------------------------------------


def accuracy_text(accuracy: float | None, snapshot: JobSnapshot) -> str:
    if accuracy is None:
        return "n/a"
    from tl_core.common import format_score

    return format_score(accuracy, snapshot.num_val_images or 0, snapshot.accuracy_metric)


def _epoch_line(row: dict, snapshot: JobSnapshot) -> str:
    """One finished epoch: epochs are counted as done, as everywhere else."""
    return (
        f"epochs done {row['epoch']:>3}/{snapshot.total_epochs}  "
        f"train loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.3f}  "
        f"val loss {row['val_loss']:.4f}  acc {accuracy_text(row['val_accuracy'], snapshot)}"
    )


def follow_job(job, quiet: bool) -> JobSnapshot:
    """Draws a progress bar from the job's snapshots until it ends; Ctrl-C or SIGTERM stops it
    cleanly, SIGUSR1 pauses and SIGUSR2 resumes it (under torchrun, every process at the same
    batch)."""
    from tl_core.training import distributed

    # Under torchrun a second signal is torchrun passing the first one on: it stops again,
    # and torchrun itself kills a process that takes too long.
    second_quits = not distributed.launched()
    stops = interrupt_stops(
        job.stop, signals=(signal.SIGINT, signal.SIGTERM), second_quits=second_quits
    )
    # A pause and a resume from outside (the app following a run on several GPUs).
    previous_pause = signal.signal(distributed.PAUSE_SIGNAL, lambda *_: job.pause())
    previous_resume = signal.signal(distributed.RESUME_SIGNAL, lambda *_: job.resume())
    # A redrawn bar suits a terminal; logs and pipes get one line per epoch instead.
    bar = _bar(sys.stderr.isatty() and not quiet, "step")
    epochs_reported = 0
    plan_reported = False
    try:
        with stops:
            while True:
                snapshot = job.wait(timeout=0.25)
                if snapshot.total_steps and bar.total != snapshot.total_steps:
                    bar.total = snapshot.total_steps
                bar.n = snapshot.step
                bar.set_description(snapshot.message[:40], refresh=False)
                label, value = snapshot.speed
                if value != "–":
                    bar.set_postfix_str(f"{value} {label.lower()}", refresh=False)
                bar.refresh()
                if snapshot.plan and not plan_reported:
                    if not quiet:
                        bar.write(snapshot.plan, file=sys.stderr)
                    # Health warnings show even when quiet: they say whether to trust the numbers.
                    for warning in snapshot.warnings:
                        bar.write(f"warning: {warning}", file=sys.stderr)
                    plan_reported = True
                if not quiet:
                    for row in snapshot.history[epochs_reported:]:
                        bar.write(_epoch_line(row, snapshot), file=sys.stderr)
                epochs_reported = len(snapshot.history)
                if not snapshot.is_active:
                    return snapshot
    finally:
        bar.close()
        signal.signal(distributed.PAUSE_SIGNAL, previous_pause)
        signal.signal(distributed.RESUME_SIGNAL, previous_resume)


def run_as_job(quiet: bool, feature_cache: Path | None = None):
    """Trains one run of a multi-run command as ``train`` does: a job followed with a bar."""
    from tl_core.jobs import TrainingJob

    def run(config: TrainConfig, writer) -> str:
        job = TrainingJob(config, writer, feature_cache=feature_cache)
        job.start()
        snapshot = follow_job(job, quiet)
        if snapshot.status == "failed":
            raise TLStudioError(snapshot.error or "The run failed.", snapshot.error_hint or "")
        return snapshot.status

    return run


class Announcer(TrainingObserver):
    """Says on stderr which step of a multi-run command starts ("Run 1 of 2: ...")."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def on_phase(self, message: str, phase: str | None = None) -> None:
        if not self.quiet:
            print(f"{message}...", file=sys.stderr)


def sweep_printer(quiet: bool) -> tuple:
    """A sweep observer (a bar per run on a terminal, a line per finished depth) and its closer."""
    from tl_core.analysis import SweepObserver

    bar = _bar(sys.stderr.isatty() and not quiet, "step")

    class Printer(SweepObserver):
        warned = False

        def on_plan(self, plan) -> None:
            # Health warnings show even when quiet, as in train; once, since the data is shared.
            if not self.warned:
                for issue in plan.warnings:
                    bar.write(f"warning: {issue.message}", file=sys.stderr)
                self.warned = True

        def on_run_start(self, index, total, row) -> None:
            bar.reset(total=1)
            bar.set_description(f"freeze {row.freeze} ({index}/{total})", refresh=False)

        def on_progress(self, progress) -> None:
            if progress.total_steps:
                bar.total = progress.total_steps
            bar.n = progress.step
            bar.refresh()

        def on_run_end(self, index, total, row) -> None:
            if quiet:
                return
            line = (
                f"[{index}/{total}] freeze {row.freeze}: {row.status}, best validation accuracy "
                f"{row.accuracy_text}, {row.seconds:.1f} s"
            )
            bar.write(line + (f" ({row.error})" if row.error else ""), file=sys.stderr)

    return Printer(), bar.close


# ---- the automatic search ----------------------------------------------------------------------


def follow_search(job, quiet: bool) -> JobSnapshot:
    """Prints an automatic search's plan before its steps, then each step as it starts (step
    i of n, time used of the budget), each run and each decision; Ctrl-C or SIGTERM stops it
    and keeps the best run so far."""
    from tl_core.auto import STEP_TITLES, duration

    said: dict[str, int] = {"plan": 0, "step": 0, "decisions": 0, "runs": 0}

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    with interrupt_stops(
        job.stop, "Stopping: the best run so far is kept", signals=(signal.SIGINT, signal.SIGTERM)
    ):
        while True:
            snapshot = job.wait(timeout=0.25)
            live = snapshot.result or {}
            used = f"{duration(live.get('used_seconds', 0))} of {duration(live['budget_seconds'])}"
            if live.get("plan_lines") and not said["plan"]:
                say("The plan, fitted to this computer's measured speed:")
                for line in live["plan_lines"]:
                    say(f"  {line}")
                said["plan"] = 1
            if live.get("step_index", 0) > said["step"]:
                said["step"] = live["step_index"]
                title = STEP_TITLES[live["step"]]
                say(f"Step {said['step']} of {live['step_total']}: {title} ({used} used)")
            if len(snapshot.finished_runs) > said["runs"]:
                said["runs"] = len(snapshot.finished_runs)
            for step in (live.get("steps") or [])[said["decisions"] :]:
                say(f"  -> {step['decision']}")
            said["decisions"] = len(live.get("steps") or [])
            if not snapshot.is_active:
                return snapshot
