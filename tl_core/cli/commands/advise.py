"""``tl-studio advise``: which backbone? Backbones ranked on the user's images before training."""

from __future__ import annotations

import argparse

from tl_core.cli.options import (
    DATA_HELP,
    add_device_option,
    add_json_option,
    at_least_two,
    positive_int,
)
from tl_core.cli.output import EXIT_OK, dump_json, print_skipped_files, print_table
from tl_core.cli.progress import measured_with_progress
from tl_core.config import ADVISOR_FOLDS, ADVISOR_MAX_IMAGES


def register(subparsers) -> None:
    advise = subparsers.add_parser(
        "advise", help="rank backbones on your images before training (which backbone?)"
    )
    advise.add_argument("data", help=DATA_HELP)
    advise.add_argument(
        "--backbones",
        metavar="A,B,C",
        help="timm names to compare (default: every catalog backbone with weights offline)",
    )
    advise.add_argument(
        "--max-images",
        type=at_least_two,
        default=ADVISOR_MAX_IMAGES,
        help="size of the stratified sample",
    )
    advise.add_argument(
        "--folds",
        type=at_least_two,
        default=ADVISOR_FOLDS,
        help="folds of the cross-validated probe",
    )
    advise.add_argument(
        "--image-size", type=positive_int, help="input size (default: each backbone's)"
    )
    advise.add_argument("--seed", type=int, default=0)
    add_device_option(advise)
    advise.add_argument(
        "--cache-dir",
        help="where computed features are kept "
        "(default: $TL_STUDIO_FEATURE_CACHE or ~/.cache/tl-studio/features)",
    )
    advise.add_argument("--no-cache", action="store_true", help="neither read nor keep features")
    add_json_option(advise, "print the ranking as JSON")
    advise.set_defaults(func=cmd_advise)


def cmd_advise(args: argparse.Namespace) -> int:
    from tl_core.analysis import advise

    names = [n for n in args.backbones.split(",") if n.strip()] if args.backbones else None
    result = measured_with_progress(
        lambda progress, stop: advise(
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
    )
    if args.json:
        dump_json(result.to_dict())
        return EXIT_OK

    def mark(candidate) -> str:
        if candidate is result.candidates[0]:
            return "best"
        return "about the same" if candidate.about_the_same else ""

    print_table(
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
    print_skipped_files([(s.path.as_posix(), s.reason) for s in result.skipped_files])
    print(f"\nRecommended: {result.reason}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.caveat)
    return EXIT_OK
