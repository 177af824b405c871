"""``tl-studio check``: the health report of a labelled image folder or .zip (with
``--label-issues``, the images whose labels look wrong too)."""

from __future__ import annotations

import argparse
import contextlib

from tl_core.cli.options import (
    DATA_HELP,
    DEFAULTS,
    add_device_option,
    add_json_option,
    fraction,
)
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, dump_json, print_skipped_files, print_table
from tl_core.cli.progress import measured_with_progress, scan_progress
from tl_core.common import plural
from tl_core.config import DEFAULT_BACKBONE


def register(subparsers) -> None:
    check = subparsers.add_parser("check", help="health report of a labelled image folder or .zip")
    check.add_argument("data", help=DATA_HELP)
    check.add_argument("--val", help="separate validation folder to check against DATA")
    check.add_argument("--val-fraction", type=fraction, default=DEFAULTS.val_fraction)
    check.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_json_option(check, "print the report as JSON")
    check.add_argument(
        "--label-issues",
        action="store_true",
        help="also look for wrong labels (one pass of the backbone over every image)",
    )
    check.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, help="with --label-issues: whose features"
    )
    add_device_option(check)
    check.add_argument("--cache-dir", help="where features are kept (default: the user cache)")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    # A zip is unpacked into a temporary folder for the check and deleted afterwards.
    with contextlib.ExitStack() as stack:
        return _check(args, stack)


def _check(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from dataclasses import replace

    from tl_core.analysis import check_health
    from tl_core.data import scanned_dataset

    report = stack.enter_context(scanned_dataset(args.data, progress=scan_progress()))
    val_report = None
    if args.val:
        val_report = stack.enter_context(scanned_dataset(args.val, progress=scan_progress()))
    health = check_health(report, val_report, args.val_fraction, args.seed)
    if args.label_issues and report.can_train:
        health = replace(health, label_issues=tuple(_find_label_issues(args, report)))
    problems = health.problems
    if args.json:
        dump_json(health.to_dict())
        return EXIT_OK if not problems else EXIT_FAILED

    noun = "tag" if report.multi_label else "class"
    labels = len(report.class_names)
    counted = plural(labels, noun) if report.multi_label else f"{labels} classes"
    print(
        f"Dataset: {report.root}  ({report.num_images} readable images, {counted}, "
        f"checked in {report.scan_seconds:.1f} s)"
    )
    print_table(list(report.counts.items()), [noun, "images"])
    if report.multi_label:
        _print_tag_summary(report)
    print_skipped_files([(report.relative(s.path), s.reason) for s in report.skipped])
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


def _print_tag_summary(report) -> None:
    """A multi-label dataset's tags per image and the pairs of tags seen together."""
    summary = report.multi_label_summary()
    per_image = ", ".join(
        f"{plural(n, 'image')} with {k}" for k, n in summary["tags_per_image"].items()
    )
    print(f"\nTags per image: {per_image}.")
    if summary["co_occurrence"]:
        print("Tags seen together:")
        print_table(
            [(" + ".join(row["tags"]), row["images"]) for row in summary["co_occurrence"]],
            ["tags", "images"],
        )


def _find_label_issues(args: argparse.Namespace, report):
    """Suspected label errors, with progress on stderr; Ctrl-C stops after the current batch."""
    from tl_core.analysis import find_label_issues

    return measured_with_progress(
        lambda progress, stop: find_label_issues(
            report, args.cache_dir, progress, stop, backbone=args.backbone, device=args.device
        )
    )


def _print_label_issues(report, issues) -> None:
    if not issues:
        print("\nNo suspected label errors.")
        return
    print(f"\nSuspected label errors ({len(issues)}, most suspicious first):")
    print_table(
        [
            (report.relative(i.path), i.given, i.suggested, f"{100 * i.confidence:.0f} %")
            for i in issues
        ],
        ["image", "labelled", "looks like", "confidence"],
    )
