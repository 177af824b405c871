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
