"""The ``tl-studio`` command line: everything the app does, through the same core.

Exit codes: 0 success, 1 the task could not be done (bad data, a failed run, ...), 2 bad usage.
Errors are printed as plain sentences with a hint, never as tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tl_core import __version__
from tl_core.common import (
    TLStudioError,
    TrainingObserver,
    UsageError,
    explain_os_error,
    os_error_in,
)
from tl_core.config import (
    AUGMENT_CHOICES,
    AUTO_CLASS_WEIGHTING_RATIO,
    CLASS_WEIGHTING_CHOICES,
    DEFAULT_BACKBONE,
    DEVICE_CHOICES,
    MODES,
    TrainConfig,
    check_mode_freeze,
    freeze_option,
)

if TYPE_CHECKING:
    from tl_core.jobs import JobSnapshot

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# One source of truth for defaults: the CLI shows what a bare TrainConfig would use.
DEFAULTS = TrainConfig(data="")


def _print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _dump_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    print()


# ---- check -------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    # A zip is unpacked into a temporary folder for the check and deleted afterwards.
    with contextlib.ExitStack() as stack:
        return _check(args, stack)


def _scan_progress():
    """Scan progress on stderr: a line redrawn in place on a terminal, a line every 10 s in
    logs ("Scanning: 12,000/50,000 files, 40 s left"); stdout stays the report alone."""
    from tl_core.common import CountProgress

    if sys.stderr.isatty():

        def redraw(line: str, final: bool) -> None:
            print(f"\r{line}\x1b[K", end="\n" if final else "", file=sys.stderr, flush=True)

        return CountProgress("Scanning", "files", redraw)
    return CountProgress("Scanning", "files", lambda line, _: print(line, file=sys.stderr), 10.0)


def _check(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from dataclasses import replace

    from tl_core.analysis import check_health
    from tl_core.data import scanned_dataset

    report = stack.enter_context(scanned_dataset(args.data, progress=_scan_progress()))
    val_report = None
    if args.val:
        val_report = stack.enter_context(scanned_dataset(args.val, progress=_scan_progress()))
    health = check_health(report, val_report, args.val_fraction, args.seed)
    if args.label_issues and report.can_train:
        health = replace(health, label_issues=tuple(_find_label_issues(args, report)))
    problems = health.problems
    if args.json:
        _dump_json(health.to_dict())
        return EXIT_OK if not problems else EXIT_FAILED

    print(
        f"Dataset: {report.root}  ({report.num_images} readable images, "
        f"{len(report.class_names)} classes, checked in {report.scan_seconds:.1f} s)"
    )
    _print_table(list(report.counts.items()), ["class", "images"])
    if report.skipped:
        print(f"\nSkipped {len(report.skipped)} files:")
        for skipped in report.skipped:
            print(f"  {report.relative(skipped.path)}: {skipped.reason}")
    if report.duplicates:
        print(f"\nDuplicate files ({len(report.duplicates)} groups):")
        for group in report.duplicates:
            where = " (different classes!)" if group.across_classes else ""
            print("  " + ", ".join(report.relative(p) for p in group.paths) + where)
    if near := report.near_copies:
        print(f"\nNear-identical images, e.g. resized or re-encoded ({len(near)} groups):")
        for group in near:
            where = " (different classes: a conflict!)" if group.across_classes else ""
            print("  " + ", ".join(report.relative(p) for p in group.paths) + where)
    if health.warnings:
        print("\nWarnings:")
        for issue in health.warnings:
            print(f"  - {issue.message}")
    if health.split:
        print(f"\nSplit: {health.split[0]} training / {health.split[1]} validation images.")
    if health.leakage and health.leakage.before:
        leakage = health.leakage
        print(
            f"Validation images with a copy in training: {leakage.before} under a split that "
            f"ignores copies, {leakage.after} with this one, which keeps copies on one side."
        )
    if health.label_issues is not None:
        _print_label_issues(report, health.label_issues)
    if problems:
        print("\nCannot train on this dataset:")
        for message in problems:
            print(f"  - {message}")
        return EXIT_FAILED
    print("\nReady to train.")
    return EXIT_OK


def _find_label_issues(args: argparse.Namespace, report):
    """Suspected label errors, with progress on stderr; Ctrl-C stops after the current batch."""
    import threading

    from tl_core.analysis import find_label_issues

    stop = threading.Event()

    def on_interrupt(*_):
        print("\nStopping after this batch (Ctrl-C again to quit at once)...", file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    progress, close = _advisor_progress(stop)
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        return find_label_issues(
            report, args.cache_dir, progress, stop, backbone=args.backbone, device=args.device
        )
    finally:
        close()
        signal.signal(signal.SIGINT, previous)


def _print_label_issues(report, issues) -> None:
    if not issues:
        print("\nNo suspected label errors.")
        return
    print(f"\nSuspected label errors ({len(issues)}, most suspicious first):")
    _print_table(
        [
            (report.relative(i.path), i.given, i.suggested, f"{100 * i.confidence:.0f} %")
            for i in issues
        ],
        ["image", "labelled", "looks like", "confidence"],
    )


# ---- backbones ---------------------------------------------------------------------------------


def cmd_backbones(args: argparse.Namespace) -> int:
    from tl_core.models import apply_freeze, create_model, list_backbones

    if args.groups:
        # Layer groups depend on the architecture only: random weights give the same answer.
        model, _ = create_model(args.groups, args.classes, pretrained=False)
        summary = apply_freeze(model, args.freeze)
        rows = summary.to_rows()
        if args.json:
            _dump_json(
                {
                    "backbone": args.groups,
                    "frozen_groups": summary.frozen_count,
                    "trainable_params": summary.trainable_params,
                    "frozen_params": summary.frozen_params,
                    "groups": rows,
                }
            )
            return EXIT_OK
        print(f"{args.groups}: {len(rows)} layer groups, --freeze {args.freeze}")
        _print_table(
            [
                (r["index"], r["name"], f"{r['params']:,}", "frozen" if r["frozen"] else "trains")
                for r in rows
            ],
            ["#", "group", "parameters", "state"],
        )
        print(
            f"\nTrainable parameters: {summary.trainable_params:,}  "
            f"Frozen: {summary.frozen_params:,}"
        )
        return EXIT_OK
    backbones = list_backbones()
    if args.json:
        _dump_json([b.to_row() for b in backbones])
        return EXIT_OK
    _print_table(
        [
            (
                b.name,
                b.info.family,
                f"{b.info.params_millions:.1f}M",
                b.info.input_size,
                b.info.hint,
                b.weights_source or "none: download, or --weights FILE",
            )
            for b in backbones
        ],
        ["backbone", "family", "params (ImageNet head)", "input", "speed", "weights offline"],
    )
    print(
        f"\nDefault: {DEFAULT_BACKBONE}. Any other timm model name works too "
        "(with --weights FILE when offline)."
    )
    return EXIT_OK


# ---- advise ------------------------------------------------------------------------------------


def _advisor_progress(stop) -> tuple:
    """A progress callback (a bar on a terminal, a line per backbone in logs) and its closer."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    bar = tqdm(total=1, unit="img", disable=not interactive, dynamic_ncols=True, file=sys.stderr)
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


def cmd_advise(args: argparse.Namespace) -> int:
    import threading

    from tl_core.analysis import advise

    stop = threading.Event()

    def on_interrupt(*_):
        print("\nStopping after this batch (Ctrl-C again to quit at once)...", file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    names = [n for n in args.backbones.split(",") if n.strip()] if args.backbones else None
    progress, close = _advisor_progress(stop)
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = advise(
            args.data,
            names,
            max_images=args.max_images,
            folds=args.folds,
            device=args.device,
            progress=progress,
            stop=stop,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            image_size=args.image_size,
            seed=args.seed,
        )
    finally:
        close()
        signal.signal(signal.SIGINT, previous)
    if args.json:
        _dump_json(result.to_dict())
        return EXIT_OK

    def mark(candidate) -> str:
        if candidate is result.candidates[0]:
            return "best"
        return "about the same" if candidate.about_the_same else ""

    _print_table(
        [
            (
                rank,
                c.backbone,
                c.band_text,
                f"{c.logme:.3f}",
                "–" if c.images_per_second is None else f"{c.images_per_second:.0f}",
                f"{c.params_millions:.1f}M",
                c.input_size,
                "–" if c.imagenet_top1 is None else f"{100 * c.imagenet_top1:.1f} %",
                mark(c),
            )
            for rank, c in enumerate(result.candidates, start=1)
        ],
        [
            "#",
            "backbone",
            "expected accuracy (head only)",
            "LogME",
            "img/s",
            "params",
            "input",
            "ImageNet top-1",
            "",
        ],
    )
    for skipped in result.skipped:
        print(f"Skipped {skipped.backbone}: {skipped.reason}")
    print(f"\nRecommended: {result.reason}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.caveat)
    return EXIT_OK


# ---- train -------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training settings given on the command line.

    Raises:
        UsageError: The settings are invalid (bad usage: exit 2).
    """
    try:
        return _train_config(args)
    except TLStudioError as exc:
        raise UsageError(exc.message, exc.hint) from None


def train_arguments(config: TrainConfig) -> list[str]:
    """The ``train`` command's arguments for ``config``: its data and every setting, spelled
    out so that a default changed later cannot change the run (the inverse of
    :func:`config_from_args`; ``val_fraction`` is left out when ``val_data`` replaces it)."""
    arguments = [
        config.data,
        *("--backbone", config.backbone, "--mode", config.mode, "--freeze", str(config.freeze)),
        *("--epochs", str(config.epochs), "--batch-size", str(config.batch_size)),
        *("--lr", repr(config.lr), "--lowest-lr-fraction", repr(config.backbone_lr_scale)),
        *("--weight-decay", repr(config.weight_decay)),
        *("--warmup-epochs", repr(config.warmup_epochs)),
        *("--label-smoothing", repr(config.label_smoothing)),
        *("--class-weighting", config.class_weighting, "--seed", str(config.seed)),
        *("--augment", config.augment, "--patience", str(config.early_stopping_patience)),
        *("--device", config.device, "--workers", str(config.num_workers)),
    ]
    if config.weights:
        arguments += ["--weights", config.weights]
    if not config.pretrained:
        arguments.append("--no-pretrained")
    if config.image_size is not None:
        arguments += ["--image-size", str(config.image_size)]
    if config.val_data:
        arguments += ["--val", config.val_data]
    else:
        arguments += ["--val-fraction", repr(config.val_fraction)]
    return arguments


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=str(args.data),
        val_data=str(args.val) if args.val else None,
        backbone=args.backbone,
        weights=str(args.weights) if args.weights else None,
        pretrained=not getattr(args, "no_pretrained", False),
        mode=check_mode_freeze(getattr(args, "mode", None), args.freeze),
        freeze=args.freeze,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr_scale=args.lowest_lr_fraction,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        class_weighting=args.class_weighting,
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        augment=args.augment,
        early_stopping_patience=args.patience,
        device=args.device,
        num_workers=args.workers,
    )


def _accuracy(accuracy: float | None, snapshot: JobSnapshot) -> str:
    if accuracy is None:
        return "n/a"
    from tl_core.common import format_accuracy

    return format_accuracy(accuracy, snapshot.num_val_images or 0)


def _epoch_line(row: dict, snapshot: JobSnapshot) -> str:
    """One finished epoch: epochs are counted as done, as everywhere else."""
    return (
        f"epochs done {row['epoch']:>3}/{snapshot.total_epochs}  "
        f"train loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.3f}  "
        f"val loss {row['val_loss']:.4f}  acc {_accuracy(row['val_accuracy'], snapshot)}"
    )


def _follow_job(job, quiet: bool) -> JobSnapshot:
    """Draws a progress bar from the job's snapshots until it ends; Ctrl-C or SIGTERM stops it
    cleanly, SIGUSR1 pauses and SIGUSR2 resumes it (under torchrun, every process at the same
    batch)."""
    from tqdm import tqdm

    from tl_core.training import distributed

    # Under torchrun a second signal is torchrun passing the first one on: it stops again,
    # and torchrun itself kills a process that takes too long.
    second_quits = not distributed.launched()

    def stop(*_):
        again = " (Ctrl-C again to quit at once)" if second_quits else ""
        print(f"\nStopping after this batch{again}...", file=sys.stderr)
        job.stop()
        if second_quits:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, stop)
    previous_term = signal.signal(signal.SIGTERM, stop)
    # A pause and a resume from outside (the app following a run on several GPUs).
    previous_pause = signal.signal(distributed.PAUSE_SIGNAL, lambda *_: job.pause())
    previous_resume = signal.signal(distributed.RESUME_SIGNAL, lambda *_: job.resume())
    # A redrawn bar suits a terminal; logs and pipes get one line per epoch instead.
    interactive = sys.stderr.isatty() and not quiet
    bar = tqdm(total=1, unit="step", disable=not interactive, dynamic_ncols=True, file=sys.stderr)
    epochs_reported = 0
    plan_reported = False
    try:
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
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(distributed.PAUSE_SIGNAL, previous_pause)
        signal.signal(distributed.RESUME_SIGNAL, previous_resume)


def add_feature_cache_options(parser: argparse.ArgumentParser) -> None:
    """--cache-dir and --no-feature-cache, for the commands that train."""
    parser.add_argument(
        "--cache-dir",
        help="where head-only runs (--freeze all, no augmentation) find and keep backbone "
        "features, shared with 'advise' "
        "(default: $TL_STUDIO_FEATURE_CACHE or ~/.cache/tl-studio/features)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="compute every backbone feature afresh and keep none",
    )


def feature_cache_of(args: argparse.Namespace) -> Path | None:
    """The feature cache folder the options ask for (None: no cache)."""
    from tl_core.features import default_cache_dir

    if args.no_feature_cache:
        return None
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def cmd_train(args: argparse.Namespace) -> int:
    if sys.stderr.isatty() and not args.quiet:
        # Importing PyTorch and timm takes seconds on a small CPU: say what the wait is.
        print("Loading PyTorch and timm...", file=sys.stderr)
    from tl_core.runs import require_new_run_dir
    from tl_core.training import distributed

    config = config_from_args(args)
    if args.nproc > 1 and not distributed.launched():
        require_new_run_dir(args.out)  # a taken folder fails before any process starts
        return distributed.launch(args.nproc, _torchrun_args(args), args.out)
    # Under torchrun only rank 0 prints; the others' output would repeat it.
    with distributed.replica_output_silenced():
        return _train(args, config)


def _torchrun_args(args: argparse.Namespace) -> list[str]:
    """This train command as each torchrun process runs it: the same settings, less --nproc."""
    cli_args = ["--debug", "train"] if args.debug else ["train"]
    for action in args.train_parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest in ("help", "nproc") or value is None or value is False:
            continue
        if not action.option_strings:  # the data folder
            cli_args.append(str(value))
        elif action.nargs == 0:  # a flag
            cli_args.append(action.option_strings[0])
        elif value != action.default:
            cli_args += [action.option_strings[0], str(value)]
    return cli_args


def _train(args: argparse.Namespace, config: TrainConfig) -> int:
    from tl_core.jobs import EventWriter, TrainingJob
    from tl_core.training import distributed

    # A pause or resume signal that comes before the job listens for it is ignored, never
    # fatal (a signal's default is to end the process); _follow_job then honours them.
    for number in (distributed.PAUSE_SIGNAL, distributed.RESUME_SIGNAL):
        signal.signal(number, signal.SIG_IGN)
    # The run folder is claimed before anything loads: a taken, shared or unwritable folder
    # fails at once, and a second training on the same --out is refused. Under torchrun,
    # rank 0 claims it and the other ranks write nothing.
    writer = distributed.run_writer(args.out)
    out = writer.path
    # Events go to stdout, which only rank 0 keeps (see replica_output_silenced).
    listener = EventWriter(sys.stdout) if args.events else None
    with distributed.process_group(config.device):
        job = TrainingJob(config, writer, feature_cache=feature_cache_of(args), listener=listener)
        started = time.monotonic()
        job.start()
        snapshot = _follow_job(job, args.quiet)
    if snapshot.status == "failed":
        _print_error(snapshot.error, snapshot.error_hint or "")
        return EXIT_FAILED
    done = len(snapshot.history)
    print(
        f"{snapshot.message}: {done} epoch{'' if done == 1 else 's'} done in "
        f"{time.monotonic() - started:.1f} s on {snapshot.device}; best validation accuracy "
        f"{_accuracy(snapshot.best_val_accuracy, snapshot)}. Run saved in {out}"
    )
    return EXIT_OK


# ---- lr-find -----------------------------------------------------------------------------------


def cmd_lr_find(args: argparse.Namespace) -> int:
    from tl_core.training import find_learning_rate

    config = config_from_args(args)
    if not args.quiet:
        print(f"Sweeping the head's learning rate over {args.num_it} batches...", file=sys.stderr)
    result = find_learning_rate(config, num_it=args.num_it)
    if args.json:
        _dump_json(result.to_dict())
        return EXIT_OK
    shown = set(range(0, len(result.lrs), max(1, len(result.lrs) // 12)))
    if result.suggestion_index is not None:
        shown.add(result.suggestion_index)
    _print_table(
        [
            (
                f"{result.lrs[i]:.1e}",
                f"{result.losses[i]:.4f}",
                "<- suggested" if i == result.suggestion_index else "",
            )
            for i in sorted(shown)
        ],
        ["learning rate", "smoothed loss", ""],
    )
    if result.diverged:
        print(f"The loss diverged at {result.lrs[-1]:.1e}: the sweep stopped there.")
    if result.suggestion is None:
        print("No suggestion: the loss diverged too early to read the curve.")
        return EXIT_FAILED
    print(f"\nSuggested learning rate (fastai's valley rule): {result.suggestion:.2g}")
    print(f"Train with it: --lr {result.suggestion:.2g}")
    return EXIT_OK


# ---- transfer-check ----------------------------------------------------------------------------


class _Announcer(TrainingObserver):
    """Says on stderr which step of a multi-run command starts ("Run 1 of 2: ...")."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def on_phase(self, message: str, phase: str | None = None) -> None:
        if not self.quiet:
            print(f"{message}...", file=sys.stderr)


def _run_as_job(quiet: bool, feature_cache: Path | None = None):
    """Trains one run of a multi-run command as ``train`` does: a job followed with a bar."""
    from tl_core.jobs import TrainingJob

    def run(config: TrainConfig, writer) -> str:
        job = TrainingJob(config, writer, feature_cache=feature_cache)
        job.start()
        snapshot = _follow_job(job, quiet)
        if snapshot.status == "failed":
            raise TLStudioError(snapshot.error or "The run failed.", snapshot.error_hint or "")
        return snapshot.status

    return run


@contextlib.contextmanager
def _interrupt_stops(stop):
    """Ctrl-C calls ``stop`` (a second one quits at once) while the block runs."""

    def on_interrupt(*_):
        print("\nStopping (Ctrl-C again to quit at once)...", file=sys.stderr)
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_transfer_check(args: argparse.Namespace) -> int:
    from tl_core.analysis import transfer_check
    from tl_core.common import JobControl, format_accuracy

    config = config_from_args(args)
    cache = feature_cache_of(args)
    control = JobControl()
    with _interrupt_stops(control.stop):
        result = transfer_check(
            config,
            args.out,
            _Announcer(args.quiet),
            control,
            train_run=_run_as_job(args.quiet, cache),
            cache_dir=cache,
        )
    if result.status != "completed":
        raise TLStudioError(
            "The transfer check was stopped before both runs finished, so nothing was compared.",
            f"The finished runs are in {result.path}. Start again with a new --out to compare.",
        )
    if args.json:
        _dump_json(result.to_dict())
        return EXIT_OK
    print(f"With pretrained weights: {format_accuracy(result.pretrained, result.num_val_images)}")
    print(f"From random weights:     {format_accuracy(result.scratch, result.num_val_images)}")
    print(f"Gain: {result.gain:+.1f} points\n")
    print(result.verdict.sentence)
    for note in result.notes:
        print(note)
    print("\nWhy (domain-distance signals):")
    for measured in result.signals.values():
        if "skipped" in measured:
            print(f"  - {measured['meaning']} Not measured: {measured['skipped']}")
        else:
            print(f"  - {measured['meaning']}")
    print(f"\nRuns saved in {result.path}; the comparison in {result.path / 'transfer.json'}")
    return EXIT_OK


# ---- evaluate / predict / export ---------------------------------------------------------------


def _note_unfinished(run: str | Path) -> None:
    """Says on stderr when a run is still training or was interrupted: its weights are used
    as they are on disk (the best epoch saved so far)."""
    from tl_core.runs import METRICS_FILE, WEIGHTS_FILE, live_status, weights_metadata

    run = Path(run)
    try:
        status = json.loads((run / METRICS_FILE).read_text()).get("status")
        epoch = weights_metadata(run / WEIGHTS_FILE).get("epoch")
    except (OSError, ValueError, AttributeError, TLStudioError):
        return  # an export, or a damaged run: loading it says what is wrong
    which = f"the weights it saved from epoch {epoch}" if epoch else "the weights it saved"
    status = live_status(status, run)
    if status == "interrupted":
        print(
            f"note: the run {run.name} was interrupted before it finished (its training "
            f"process ended); using {which}.",
            file=sys.stderr,
        )
    elif status == "running":
        print(f"note: the run {run.name} is still training; using {which}.", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tl_core.inference import evaluate_run

    _note_unfinished(args.run)
    evaluation = evaluate_run(args.run, args.data, device=args.device)
    if args.json:
        _dump_json(
            {
                "accuracy": evaluation.accuracy,
                "num_images": evaluation.num_images,
                "accuracy_ci95": list(evaluation.interval),
                "labels": evaluation.labels,
                "confusion": evaluation.confusion.to_numpy().tolist(),
                "per_class": evaluation.per_class.to_dict(orient="records"),
                "predictions": evaluation.predictions.to_dict(orient="records"),
            }
        )
        return EXIT_OK
    print(f"Accuracy: {evaluation.accuracy_text}\n")
    print("Confusion matrix (rows: true class, columns: predicted):")
    print(evaluation.confusion.to_string())
    print()
    print(evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return EXIT_OK


# ---- sweep -------------------------------------------------------------------------------------

# A sweep trains one run per depth: short runs unless --epochs says otherwise.
SWEEP_EPOCHS = 5


def _sweep_printer(quiet: bool) -> tuple:
    """A sweep observer (a bar per run on a terminal, a line per finished depth) and its closer."""
    from tqdm import tqdm

    from tl_core.analysis import SweepObserver

    interactive = sys.stderr.isatty() and not quiet
    bar = tqdm(total=1, unit="step", disable=not interactive, dynamic_ncols=True, file=sys.stderr)

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


def cmd_sweep(args: argparse.Namespace) -> int:
    from tl_core.analysis import NOT_RUN, split_depths
    from tl_core.analysis.sweep import sweep
    from tl_core.common import JobControl
    from tl_core.runs import SWEEP_FILE

    # The recipe without a depth: the sweep sets one per run.
    config = config_from_args(argparse.Namespace(**{**vars(args), "freeze": "all"}))
    depths = None if args.freeze is None else split_depths(args.freeze)
    control = JobControl()
    printer, close = _sweep_printer(args.quiet)
    try:
        with _interrupt_stops(control.stop):
            result = sweep(
                config, args.out, depths, printer, control, feature_cache=feature_cache_of(args)
            )
    finally:
        close()
    code = EXIT_FAILED if result.failed else EXIT_OK
    if args.json:
        _dump_json(result.to_dict())
        return code
    best = result.best

    def mark(row) -> str:
        return "best" if row.freeze == best else "" if row.status == "completed" else row.status

    _print_table(
        [
            (
                r.freeze,
                f"{r.frozen_groups}/{result.num_backbone_groups}",
                r.accuracy_text,
                "–" if r.status == NOT_RUN else f"{r.seconds:.1f}",
                mark(r),
            )
            for r in result.rows
        ],
        ["freeze", "groups frozen", "best validation accuracy", "seconds", ""],
    )
    print(f"\nBest depth: freeze {best}" if best else "\nNo best depth: no run finished.")
    print(result.summary())
    print(f"\nRuns saved in {result.path}; the results in {result.path / SWEEP_FILE}")
    return code


def cmd_note(args: argparse.Namespace) -> int:
    from tl_core.runs import read_note, write_note

    if args.text is None:
        print(read_note(args.run) or "(no note)")
        return EXIT_OK
    note = write_note(args.run, args.text)
    print(f"Note saved: {note}" if note else "Note removed.")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from tl_core.inference import Predictor, collect_image_paths

    paths = collect_image_paths(args.images)
    if not paths:
        raise TLStudioError("No image files were found.", "Give image files or folders of them.")
    _note_unfinished(args.run)
    predictor = Predictor.from_run(args.run, device=args.device)
    results = predictor.predict_paths(paths, top_k=args.top_k)
    if args.json:
        _dump_json(
            [
                {
                    "image": r.image,
                    "predictions": [{"label": lab, "probability": p} for lab, p in r.predictions],
                    **({"error": r.error} if r.error else {}),
                }
                for r in results
            ]
        )
    else:
        rows = []
        for r in results:
            ranked = ", ".join(f"{label} {p:.1%}" for label, p in r.predictions)
            rows.append((r.image, r.error and f"error: {r.error}" or ranked))
        _print_table(rows, ["image", f"top {args.top_k}"])
    return EXIT_FAILED if all(r.error for r in results) else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from tl_core.common import check_output_file
    from tl_core.data import load_image
    from tl_core.inference import Predictor

    # Bad paths fail before the model loads.
    check_output_file(args.out)
    out = Path(args.out)
    if out.suffix.lower() not in Image.registered_extensions():
        raise TLStudioError(
            f"Cannot tell which image format to write from the name {out.name}.",
            "End --out with .png.",
        )
    if not Path(args.image).is_file():
        raise TLStudioError(f"{args.image} does not exist.", "Check the path and try again.")
    image = load_image(args.image)
    _note_unfinished(args.run)
    predictor = Predictor.from_run(args.run, device=args.device)
    overlay, label, probability = predictor.explain(image, args.label)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(out)
    print(f"{label} {probability:.1%}  (saliency overlay written to {out})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from tl_core.common import check_output_file, format_size
    from tl_core.export import ZIP_FORMAT, export_model, export_zip, format_for

    check_output_file(args.out)  # before the model is built
    _note_unfinished(args.run)
    model_format = format_for(args.out, args.format)
    if model_format == ZIP_FORMAT:
        path = export_zip(args.run, args.out)
        print(f"Exported the run (.zip) to {path} ({format_size(path.stat().st_size)})")
        return EXIT_OK
    result = export_model(  # steps on stderr: stdout keeps the result alone
        args.run, args.out, model_format, on_step=lambda step: print(f"{step}...", file=sys.stderr)
    )
    print(f"Exported {model_format} to {result.path} ({format_size(result.size_bytes)})")
    print(f"Check: {result.check.text}")
    if model_format == "torchscript":
        print(
            "note: TorchScript is deprecated by PyTorch; it is kept for LibTorch C++. "
            "Prefer --format onnx or pt2.",
            file=sys.stderr,
        )
    return EXIT_OK


# ---- parser ------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("cannot be negative")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("cannot be negative")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1, e.g. 0.2")
    return value


def add_train_options(
    parser: argparse.ArgumentParser, *, pretrained_flag: bool = False, freeze: bool = True
) -> None:
    """The data argument and the training recipe's options, shared by every command that trains.

    Args:
        parser: The command's parser.
        pretrained_flag: Add ``--no-pretrained`` (random initialisation).
        freeze: Add ``--freeze`` (a command that varies the freeze depth adds its own).
    """
    parser.add_argument("data", help="folder with one subfolder per class, or a .zip of one")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="any timm model name")
    parser.add_argument("--weights", help="weights file (.safetensors or .pth) for the backbone")
    if pretrained_flag:
        parser.add_argument(
            "--no-pretrained",
            action="store_true",
            help="random initialisation (baseline without transfer)",
        )
    if freeze:
        parser.add_argument(
            "--mode",
            choices=MODES,
            help="feature-extraction: head only; fine-tune: the groups above --freeze K; "
            "full-fine-tune: everything; gradual: head first, then one more group per stage "
            f"(default: what --freeze says, else {DEFAULTS.mode})",
        )
        parser.add_argument(
            "--freeze",
            type=freeze_option,
            help="'all' (head only), 'none', or K leading layer groups; with --mode gradual, "
            "the depth unfreezing stops at (default: what the mode implies)",
        )
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS.epochs)
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULTS.batch_size)
    parser.add_argument(
        "--lr", type=_positive_float, default=DEFAULTS.lr, help="learning rate of the head"
    )
    parser.add_argument(
        "--lowest-lr-fraction",
        type=_positive_float,
        default=DEFAULTS.backbone_lr_scale,
        help="the lowest trainable group's share of --lr; rates rise geometrically to the "
        "head's (1: one rate everywhere)",
    )
    parser.add_argument("--weight-decay", type=_non_negative_float, default=DEFAULTS.weight_decay)
    parser.add_argument(
        "--warmup-epochs",
        type=_non_negative_float,
        default=DEFAULTS.warmup_epochs,
        help="linear warm-up, at most a quarter of the run (of each gradual stage)",
    )
    parser.add_argument(
        "--label-smoothing", type=_non_negative_float, default=DEFAULTS.label_smoothing
    )
    parser.add_argument(
        "--class-weighting",
        choices=CLASS_WEIGHTING_CHOICES,
        default=DEFAULTS.class_weighting,
        help="weight the loss by class so small classes count as much as big ones (auto: "
        f"when the largest class has {AUTO_CLASS_WEIGHTING_RATIO:g}x the smallest's images)",
    )
    parser.add_argument(
        "--image-size", type=_positive_int, help="input size (default: the backbone's)"
    )
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=_fraction, default=DEFAULTS.val_fraction)
    split.add_argument("--val", help="separate validation folder")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument(
        "--augment",
        choices=AUGMENT_CHOICES,
        default="auto",
        help="auto: none when only the head trains, light otherwise",
    )
    parser.add_argument(
        "--patience",
        type=_non_negative_int,
        default=DEFAULTS.early_stopping_patience,
        help="early-stopping patience in epochs (0: off)",
    )
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--workers", type=int, default=-1, help="data-loading processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-studio", description="Transfer learning on your own labelled images."
    )
    parser.add_argument("--version", action="version", version=f"tl-studio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="health report of a labelled image folder or .zip")
    check.add_argument("data", help="folder with one subfolder per class, or a .zip of one")
    check.add_argument("--val", help="separate validation folder to check against DATA")
    check.add_argument("--val-fraction", type=_fraction, default=0.2)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--label-issues",
        action="store_true",
        help="also look for wrong labels (one pass of the backbone over every image)",
    )
    check.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, help="with --label-issues: whose features"
    )
    check.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    check.add_argument("--cache-dir", help="where features are kept (default: the user cache)")
    check.set_defaults(func=cmd_check)

    backbones = sub.add_parser("backbones", help="list the curated backbones")
    backbones.add_argument(
        "--groups",
        metavar="BACKBONE",
        help="show this backbone's layer groups and what --freeze leaves",
    )
    backbones.add_argument(
        "--freeze", type=freeze_option, default="all", help="with --groups: all, none or K"
    )
    backbones.add_argument(
        "--classes", type=_positive_int, default=2, help="with --groups: classes of the new head"
    )
    backbones.add_argument("--json", action="store_true")
    backbones.set_defaults(func=cmd_backbones)

    advise = sub.add_parser(
        "advise", help="rank backbones on your images before training (which backbone?)"
    )
    advise.add_argument("data", help="folder with one subfolder per class, or a .zip of one")
    advise.add_argument(
        "--backbones",
        metavar="A,B,C",
        help="timm names to compare (default: every catalog backbone with weights offline)",
    )
    advise.add_argument(
        "--max-images", type=_at_least_two, default=500, help="size of the stratified sample"
    )
    advise.add_argument(
        "--folds", type=_at_least_two, default=5, help="folds of the cross-validated probe"
    )
    advise.add_argument(
        "--image-size", type=_positive_int, help="input size (default: each backbone's)"
    )
    advise.add_argument("--seed", type=int, default=0)
    advise.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    advise.add_argument(
        "--cache-dir",
        help="where computed features are kept "
        "(default: $TL_STUDIO_FEATURE_CACHE or ~/.cache/tl-studio/features)",
    )
    advise.add_argument("--no-cache", action="store_true", help="neither read nor keep features")
    advise.add_argument("--json", action="store_true", help="print the ranking as JSON")
    advise.set_defaults(func=cmd_advise)

    train = sub.add_parser("train", help="train a classifier on a labelled folder or .zip")
    train.add_argument("--out", required=True, help="new run folder to write")
    add_train_options(train, pretrained_flag=True)
    add_feature_cache_options(train)
    train.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        help="train in N processes with DistributedDataParallel, launched through torchrun: "
        "one per GPU (N at most the GPUs), or CPU processes; --batch-size is per process",
    )
    train.add_argument(
        "--events",
        action="store_true",
        help="also write every training event (phases, batches, epochs, progress) as a line "
        "of JSON on stdout, for a program that follows the run, such as the app",
    )
    train.set_defaults(func=cmd_train, train_parser=train)

    lr_find = sub.add_parser(
        "lr-find", help="which learning rate? a short sweep of rates with the loss at each"
    )
    add_train_options(lr_find, pretrained_flag=True)
    lr_find.add_argument("--num-it", type=_at_least_two, default=100, help="batches in the sweep")
    lr_find.add_argument("--json", action="store_true", help="print the curve as JSON")
    lr_find.set_defaults(func=cmd_lr_find)

    transfer = sub.add_parser(
        "transfer-check",
        help="did transfer help? the same recipe from pretrained and from random weights",
    )
    transfer.add_argument("--out", required=True, help="new folder for both runs and transfer.json")
    add_train_options(transfer)
    add_feature_cache_options(transfer)
    transfer.add_argument("--json", action="store_true", help="print transfer.json")
    transfer.set_defaults(func=cmd_transfer_check)

    evaluate = sub.add_parser("evaluate", help="confusion matrix and per-class scores of a run")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--data", help="labelled folder or .zip (default: the run's validation)")
    evaluate.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_evaluate)

    sweep = sub.add_parser(
        "sweep", help="how deep to freeze? the same recipe trained at several freeze depths"
    )
    sweep.add_argument(
        "--out", required=True, help="new folder for one run per depth and sweep.json"
    )
    add_train_options(sweep, pretrained_flag=True, freeze=False)
    sweep.add_argument(
        "--freeze",
        metavar="DEPTHS",
        help="comma-separated freeze depths, e.g. 0,2,4,all "
        "(default: 0, all and up to three depths between)",
    )
    add_feature_cache_options(sweep)
    sweep.add_argument("--json", action="store_true", help="print sweep.json")
    sweep.set_defaults(func=cmd_sweep, epochs=SWEEP_EPOCHS)

    note = sub.add_parser("note", help="show or set a run's short note (shown in run titles)")
    note.add_argument("run", help="run folder")
    note.add_argument("text", nargs="?", help='the note; "" removes it (default: show it)')
    note.set_defaults(func=cmd_note)

    predict = sub.add_parser("predict", help="classify images with a trained run")
    predict.add_argument("run", help="run folder (or an unzipped export)")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--top-k", type=_positive_int, default=3)
    predict.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=cmd_predict)

    explain = sub.add_parser("explain", help="saliency map: where the model looked in an image")
    explain.add_argument("run", help="run folder (or an unzipped export)")
    explain.add_argument("image", help="image file")
    explain.add_argument("--label", help="class to explain (default: the predicted one)")
    explain.add_argument("--out", required=True, help="PNG file to write the overlay to")
    explain.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    explain.set_defaults(func=cmd_explain)

    export = sub.add_parser(
        "export", help="export a run as ONNX, torch.export (.pt2), TorchScript or a .zip"
    )
    export.add_argument("run", help="run folder")
    export.add_argument(
        "--format",
        choices=("onnx", "pt2", "torchscript", "zip"),
        default=None,
        help="default: from --out's ending (.onnx, .pt2, .pt, .zip), else onnx, which most "
        "runtimes load; model files are checked against PyTorch before they are kept",
    )
    export.add_argument("--out", required=True, help="file to write")
    export.set_defaults(func=cmd_export)
    for command in sub.choices.values():
        command.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return parser


def _print_error(message: str, hint: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TLStudioError as exc:
        if args.debug:
            raise
        _print_error(exc.message, exc.hint)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        os_error = os_error_in(exc)  # a full disk or a read-only folder is not a bug
        if os_error is not None:
            _print_error(*explain_os_error(os_error))
        else:
            _print_error(
                f"unexpected {type(exc).__name__}: {exc}",
                "run again with --debug to see the full traceback.",
            )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
