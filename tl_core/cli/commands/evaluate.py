"""``tl-studio evaluate``: a run's confusion matrix and per-class scores."""

from __future__ import annotations

import argparse

from tl_core.cli.options import add_device_option, add_json_option
from tl_core.cli.output import EXIT_OK, dump_json, note_unfinished


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="confusion matrix and per-class scores of a run"
    )
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--data", help="labelled folder or .zip (default: the run's validation)")
    add_device_option(evaluate)
    add_json_option(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tl_core.inference import evaluate_run

    note_unfinished(args.run)
    evaluation = evaluate_run(args.run, args.data, device=args.device)
    if getattr(evaluation, "multi_label", False):
        return _print_multi_label(evaluation, args.json)
    if args.json:
        dump_json(
            {
                "accuracy": evaluation.accuracy,
                "num_images": evaluation.num_images,
                "accuracy_ci95": list(evaluation.interval),
                "labels": evaluation.labels,
                "confusion": evaluation.confusion.to_numpy().tolist(),
                "per_class": evaluation.per_class.to_dict(orient="records"),
                "predictions": evaluation.predictions.to_dict(orient="records"),
                # Expected calibration error before and after temperature scaling, with the
                # reliability bins (None for a run trained before calibration existed).
                "calibration": (
                    evaluation.calibration.to_dict() if evaluation.calibration else None
                ),
            }
        )
        return EXIT_OK
    print(f"Accuracy: {evaluation.accuracy_text}\n")
    print("Confusion matrix (rows: true class, columns: predicted):")
    print(evaluation.confusion.to_string())
    print()
    print(evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if evaluation.calibration is not None:
        print(f"\nCalibration: {evaluation.calibration.text}")
    return EXIT_OK


def _print_multi_label(evaluation, as_json: bool) -> int:
    """A multi-label run's evaluation: per-tag scores at its thresholds, tags missed and added,
    and the most wrong images (``--json``: everything, with the images behind each count)."""
    if as_json:
        dump_json(
            {
                **evaluation.to_dict(),
                "predictions": evaluation.predictions.to_dict(orient="records"),
            }
        )
        return EXIT_OK
    mean_ap = evaluation.mean_average_precision
    print(
        f"Macro F1 at the per-tag thresholds: {evaluation.macro_f1:.1%}; mean average "
        f"precision: {'n/a' if mean_ap != mean_ap else f'{mean_ap:.1%}'}; every tag right on "
        f"{evaluation.exact_match:.1%} of {evaluation.num_images} images.\n"
    )
    columns = ["tag", "threshold", "precision", "recall", "f1", "average_precision", "support",
               "missed", "added"]  # fmt: skip
    table = evaluation.per_tag[columns]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nTags predicted together (rows: true tag, columns: predicted tag):")
    print(evaluation.tag_confusion().to_string())
    return EXIT_OK
