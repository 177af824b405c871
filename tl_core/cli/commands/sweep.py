"""``tl-studio sweep``: how deep to freeze? The same recipe trained at several freeze depths."""

from __future__ import annotations

import argparse

from tl_core.cli.options import (
    add_feature_cache_options,
    add_json_option,
    add_train_options,
    config_from_args,
    feature_cache_of,
)
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, dump_json, print_table
from tl_core.cli.progress import interrupt_stops, sweep_printer
from tl_core.config import SWEEP_EPOCHS


def register(subparsers) -> None:
    sweep = subparsers.add_parser(
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
    add_json_option(sweep, "print sweep.json")
    # Each run of a sweep is short unless --epochs says otherwise, as in the app.
    sweep.set_defaults(func=cmd_sweep, epochs=SWEEP_EPOCHS)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tl_core.analysis import NOT_RUN, split_depths
    from tl_core.analysis.sweep import sweep
    from tl_core.common import JobControl
    from tl_core.runs import SWEEP_FILE

    # The recipe without a depth: the sweep sets one per run.
    config = config_from_args(argparse.Namespace(**{**vars(args), "freeze": "all"}))
    depths = None if args.freeze is None else split_depths(args.freeze)
    control = JobControl()
    printer, close = sweep_printer(args.quiet)
    try:
        with interrupt_stops(control.stop, "Stopping"):
            result = sweep(
                config, args.out, depths, printer, control, feature_cache=feature_cache_of(args)
            )
    finally:
        close()
    code = EXIT_FAILED if result.failed else EXIT_OK
    if args.json:
        dump_json(result.to_dict())
        return code
    best = result.best

    def mark(row) -> str:
        return "best" if row.freeze == best else "" if row.status == "completed" else row.status

    print_table(
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
