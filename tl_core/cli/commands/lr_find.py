"""``tl-studio lr-find``: which learning rate? A short sweep of rates with the loss at each."""

from __future__ import annotations

import argparse
import sys

from tl_core.cli.options import add_json_option, add_train_options, at_least_two, config_from_args
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, dump_json, print_table
from tl_core.config import LR_FINDER_STEPS


def register(subparsers) -> None:
    lr_find = subparsers.add_parser(
        "lr-find", help="which learning rate? a short sweep of rates with the loss at each"
    )
    add_train_options(lr_find, pretrained_flag=True)
    lr_find.add_argument(
        "--num-it", type=at_least_two, default=LR_FINDER_STEPS, help="batches in the sweep"
    )
    add_json_option(lr_find, "print the curve as JSON")
    lr_find.set_defaults(func=cmd_lr_find)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from tl_core.training import find_learning_rate

    config = config_from_args(args)
    if not args.quiet:
        print(f"Sweeping the head's learning rate over {args.num_it} batches...", file=sys.stderr)
    result = find_learning_rate(config, num_it=args.num_it)
    if args.json:
        dump_json(result.to_dict())
        return EXIT_OK
    shown = set(range(0, len(result.lrs), max(1, len(result.lrs) // 12)))
    if result.suggestion_index is not None:
        shown.add(result.suggestion_index)
    print_table(
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
