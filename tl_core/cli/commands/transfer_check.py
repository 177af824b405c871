"""``tl-studio transfer-check``: did transfer help? The same recipe trained from pretrained and
from random weights, with the domain-distance signals that say why."""

from __future__ import annotations

import argparse

from tl_core.cli.options import (
    add_feature_cache_options,
    add_json_option,
    add_train_options,
    config_from_args,
    feature_cache_of,
)
from tl_core.cli.output import EXIT_OK, dump_json
from tl_core.cli.progress import Announcer, interrupt_stops, run_as_job
from tl_core.common import TLStudioError


def register(subparsers) -> None:
    transfer = subparsers.add_parser(
        "transfer-check",
        help="did transfer help? the same recipe from pretrained and from random weights",
    )
    transfer.add_argument("--out", required=True, help="new folder for both runs and transfer.json")
    add_train_options(transfer)
    add_feature_cache_options(transfer)
    add_json_option(transfer, "print transfer.json")
    transfer.set_defaults(func=cmd_transfer_check)


def cmd_transfer_check(args: argparse.Namespace) -> int:
    from tl_core.analysis import transfer_check
    from tl_core.common import JobControl, format_accuracy

    config = config_from_args(args)
    cache = feature_cache_of(args)
    control = JobControl()
    with interrupt_stops(control.stop, "Stopping"):
        result = transfer_check(
            config,
            args.out,
            Announcer(args.quiet),
            control,
            train_run=run_as_job(args.quiet, cache),
            cache_dir=cache,
        )
    if result.status != "completed":
        raise TLStudioError(
            "The transfer check was stopped before both runs finished, so nothing was compared.",
            f"The finished runs are in {result.path}. Start again with a new --out to compare.",
        )
    if args.json:
        dump_json(result.to_dict())
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
