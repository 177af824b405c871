"""Using a trained run on new images: ``tl-studio predict`` (top classes per image) and
``tl-studio explain`` (a saliency map: where the model looked)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tl_core.cli.options import add_device_option, add_json_option, positive_int
from tl_core.cli.output import EXIT_FAILED, EXIT_OK, dump_json, note_unfinished, print_table
from tl_core.common import TLStudioError
from tl_core.config import PREDICT_TOP_K


def register(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="classify images with a trained run")
    predict.add_argument("run", help="run folder (or an unzipped export)")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--top-k", type=positive_int, default=PREDICT_TOP_K)
    add_device_option(predict)
    add_json_option(predict)
    predict.set_defaults(func=cmd_predict)

    explain = subparsers.add_parser(
        "explain", help="saliency map: where the model looked in an image"
    )
    explain.add_argument("run", help="run folder (or an unzipped export)")
    explain.add_argument("image", help="image file")
    explain.add_argument("--label", help="class to explain (default: the predicted one)")
    explain.add_argument("--out", required=True, help="PNG file to write the overlay to")
    add_device_option(explain)
    explain.set_defaults(func=cmd_explain)


def cmd_predict(args: argparse.Namespace) -> int:
    import sys

    from tl_core.inference import (
        Predictor,
        answer_text,
        collect_image_paths,
        domain_shift_summary,
        prediction_rows,
        unknown_first,
    )

    paths = collect_image_paths(args.images)
    if not paths:
        raise TLStudioError("No image files were found.", "Give image files or folders of them.")
    note_unfinished(args.run)
    predictor = Predictor.from_run(args.run, device=args.device)
    # Images unlike the training images first: their answers are the ones to doubt.
    results = unknown_first(predictor.predict_paths(paths, top_k=args.top_k))
    summary = domain_shift_summary(results, checked=predictor.open_set is not None)
    if args.json:
        dump_json(prediction_rows(results))
        if len(paths) > 1 or not summary.checked:
            print(summary.text, file=sys.stderr)  # stdout stays pure JSON
    else:
        rows = []
        for r in results:
            ranked = ", ".join(f"{label} {p:.1%}" for label, p in r.predictions)
            rows.append((r.image, answer_text(r), r.error and f"error: {r.error}" or ranked))
        print_table(rows, ["image", "answer", f"top {args.top_k}"])
        if len(paths) > 1 or not summary.checked:
            print(f"\n{summary.text}")
        print(predictor.calibration.text)
    return EXIT_FAILED if all(r.error for r in results) else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from tl_core.common import check_output_file
    from tl_core.data import load_image
    from tl_core.inference import Predictor

    # Bad paths fail before the model loads.
    check_output_file(args.out)
    out = Path(args.out)
    if out.suffix.lower() not in Image.registered_extensions():
        raise TLStudioError(
            f"Cannot tell which image format to write from the name {out.name}.",
            "End --out with .png.",
        )
    if not Path(args.image).is_file():
        raise TLStudioError(f"{args.image} does not exist.", "Check the path and try again.")
    image = load_image(args.image)
    note_unfinished(args.run)
    predictor = Predictor.from_run(args.run, device=args.device)
    overlay, label, probability = predictor.explain(image, args.label)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(out)
    print(f"{label} {probability:.1%}  (saliency overlay written to {out})")
    return EXIT_OK
