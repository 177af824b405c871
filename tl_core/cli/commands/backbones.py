"""``tl-studio backbones``: the curated backbones, or one backbone's layer groups and what a
freeze setting leaves trainable."""

from __future__ import annotations

import argparse

from tl_core.cli.options import add_json_option, positive_int
from tl_core.cli.output import EXIT_OK, dump_json, print_table
from tl_core.config import DEFAULT_BACKBONE, freeze_option


def register(subparsers) -> None:
    backbones = subparsers.add_parser("backbones", help="list the curated backbones")
    backbones.add_argument(
        "--groups",
        metavar="BACKBONE",
        help="show this backbone's layer groups and what --freeze leaves",
    )
    backbones.add_argument(
        "--freeze", type=freeze_option, default="all", help="with --groups: all, none or K"
    )
    backbones.add_argument(
        "--classes", type=positive_int, default=2, help="with --groups: classes of the new head"
    )
    add_json_option(backbones)
    backbones.set_defaults(func=cmd_backbones)


def cmd_backbones(args: argparse.Namespace) -> int:
    from tl_core.models import list_backbones

    if args.groups:
        return _print_groups(args)
    backbones = list_backbones()
    if args.json:
        dump_json([b.to_row() for b in backbones])
        return EXIT_OK
    print_table(
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


def _print_groups(args: argparse.Namespace) -> int:
    from tl_core.models import apply_freeze, create_model

    # Layer groups depend on the architecture only: random weights give the same answer.
    model, _ = create_model(args.groups, args.classes, pretrained=False)
    summary = apply_freeze(model, args.freeze)
    rows = summary.to_rows()
    if args.json:
        dump_json(
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
    print_table(
        [
            (r["index"], r["name"], f"{r['params']:,}", "frozen" if r["frozen"] else "trains")
            for r in rows
        ],
        ["#", "group", "parameters", "state"],
    )
    print(
        f"\nTrainable parameters: {summary.trainable_params:,}  Frozen: {summary.frozen_params:,}"
    )
    return EXIT_OK
