"""``tl-studio auto``: one command for a good model, a recipe search within a time budget."""

from __future__ import annotations

import argparse
import sys

from tl_core.cli.options import (
    add_device_option,
    add_feature_cache_options,
    add_json_option,
    positive_int,
)
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, dump_json, print_error


def register(subparsers) -> None:
    auto = subparsers.add_parser(
        "auto",
        help="find a good model for me: backbone, freeze depth, learning rate and "
        "augmentation searched within a time budget",
    )
    auto.add_argument("data", help="labelled images: a folder or .zip with one folder per class")
    auto.add_argument("--out", required=True, help="new folder for the search's runs and auto.json")
    auto.add_argument(
        "--budget", default="10m", help="time for the whole search, e.g. 10m, 90s, 1h (default 10m)"
    )
    auto.add_argument(
        "--backbones",
        metavar="NAMES",
        help="comma-separated candidates (default: every catalog backbone with weights here)",
    )
    auto.add_argument("--batch-size", type=positive_int, help="images per step (default 32)")
    auto.add_argument("--image-size", type=positive_int, help="input side in pixels")
    auto.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="random initialisation throughout (a baseline; no transfer check)",
    )
    auto.add_argument("--seed", type=int, default=0, help="seeds the split and training")
    auto.add_argument("--workers", type=int, default=-1, help="data-loading processes")
    add_device_option(auto)
    add_feature_cache_options(auto)
    add_json_option(auto, "print auto.json")
    auto.add_argument("--quiet", action="store_true", help="no progress")
    auto.set_defaults(func=cmd_auto)


def _settings(args: argparse.Namespace):
    from tl_core.auto import SearchSettings, parse_budget
    from tl_core.cli.options import feature_cache_of
    from tl_core.config import TrainConfig

    base = TrainConfig(
        data=args.data,
        seed=args.seed,
        pretrained=args.pretrained,
        device=args.device,
        num_workers=args.workers,
        image_size=args.image_size,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )
    names = [n.strip() for n in (args.backbones or "").split(",") if n.strip()]
    return SearchSettings(
        data=args.data,
        budget_seconds=parse_budget(args.budget),
        base=base.replace(backbone=names[0]) if names else base,
        backbones=tuple(names) or None,
        feature_cache=feature_cache_of(args),
    )


def cmd_auto(args: argparse.Namespace) -> int:
    from tl_core.cli.progress import follow_search
    from tl_core.jobs import AutoJob

    job = AutoJob(_settings(args), args.out)
    job.start()
    snapshot = follow_search(job, args.quiet)
    live = snapshot.result or {}
    if snapshot.status == "failed":
        print_error(snapshot.error, snapshot.error_hint or "")
        return EXIT_FAILED
    if args.json:
        from tl_core.auto import read_auto

        dump_json(read_auto(args.out))
        return EXIT_OK
    print("Decisions:")
    for step in live.get("steps") or []:
        print(f"- {step['decision']}")
        for line in step["evidence"]:
            print(f"    {line}")
    for sentence in live.get("not_tried") or []:
        print(f"Not tried: {sentence}")
    best = live.get("best")
    if best is None:
        print("No run finished an epoch: there is no model to hand over.", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"\nBest run: {snapshot.result_run} ({best['backbone']}, freeze {best['freeze']}, "
        f"learning rate {best['lr']:.0e}, augmentation {best['augment']}): validation accuracy "
        f"{best['val_accuracy']:.1%} (95 % CI {best['val_low']:.0%}–{best['val_high']:.0%}). "
        f"The search took {live.get('used_seconds', 0):.0f} s of "
        f"{live.get('budget_seconds', 0):.0f} s; auto.json is in {args.out}"
    )
    return EXIT_OK
