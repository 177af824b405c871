"""``tl-studio train``: one run trained as a job and followed on the terminal; with ``--nproc N``
in N processes launched through torchrun, each of which runs this command again with the same
settings (``--config``, a file the launcher writes)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from tl_core.cli.options import (
    RECIPE_FIELDS,
    add_feature_cache_options,
    add_train_options,
    config_from_args,
    feature_cache_of,
    positive_int,
)
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, print_error
from tl_core.cli.progress import accuracy_text, follow_job
from tl_core.config import TrainConfig


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a classifier on a labelled folder or .zip")
    train.add_argument("--out", required=True, help="new run folder to write")
    add_train_options(train, pretrained_flag=True, config_file=True)
    add_feature_cache_options(train)
    train.add_argument(
        "--nproc",
        type=positive_int,
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


def cmd_train(args: argparse.Namespace) -> int:
    if sys.stderr.isatty() and not args.quiet:
        # Importing PyTorch and timm takes seconds on a small CPU: say what the wait is.
        print("Loading PyTorch and timm...", file=sys.stderr)
    from tl_core.config import write_train_config
    from tl_core.runs import require_new_run_dir
    from tl_core.training import distributed

    config = config_from_args(args)
    if args.nproc > 1 and not distributed.launched():
        require_new_run_dir(args.out)  # a taken folder fails before any process starts
        # Every process reads the settings this process settled on, from a file that lives
        # as long as they do.
        with tempfile.TemporaryDirectory(prefix="tl-studio-train-") as folder:
            config_file = write_train_config(config, Path(folder) / "train.json")
            return distributed.launch(args.nproc, worker_arguments(args, config_file), args.out)
    # Under torchrun only rank 0 prints; the others' output would repeat it.
    with distributed.replica_output_silenced():
        return _train(args, config)


def worker_arguments(args: argparse.Namespace, config_file: str | Path) -> list[str]:
    """This train command as each torchrun process runs it: the settings from ``config_file``
    (none spelled as options), every other option as given, less --nproc."""
    cli_args = ["--debug", "train"] if args.debug else ["train"]
    cli_args += ["--config", str(config_file)]
    for action in args.train_parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest in ("help", "nproc", "config", *RECIPE_FIELDS):
            continue
        if value is None or value is False:
            continue
        if action.nargs == 0:  # a flag
            cli_args.append(action.option_strings[0])
        elif value != action.default:
            cli_args += [action.option_strings[0], str(value)]
    return cli_args


def _train(args: argparse.Namespace, config: TrainConfig) -> int:
    from tl_core.jobs import EventWriter, TrainingJob
    from tl_core.training import distributed

    # A pause or resume signal that comes before the job listens for it is ignored, never
    # fatal (a signal's default is to end the process); follow_job then honours them.
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
        snapshot = follow_job(job, args.quiet)
    if snapshot.status == "failed":
        print_error(snapshot.error, snapshot.error_hint or "")
        return EXIT_FAILED
    done = len(snapshot.history)
    # A multi-label run's score names its own metric ("83.3 % macro F1 at threshold 0.5 ...").
    measure = "" if snapshot.accuracy_metric != "accuracy" else "accuracy "
    print(
        f"{snapshot.message}: {done} epoch{'' if done == 1 else 's'} done in "
        f"{time.monotonic() - started:.1f} s on {snapshot.device}; best validation {measure}"
        f"{accuracy_text(snapshot.best_val_accuracy, snapshot)}. Run saved in {out}"
    )
    return EXIT_OK
