"""``tl-studio export``: a run as ONNX, torch.export (.pt2), TorchScript, a .zip, or one web
page that classifies in any browser."""

from __future__ import annotations

import argparse
import sys

from tl_core.cli.output import EXIT_OK, note_unfinished


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a run as ONNX, torch.export (.pt2), TorchScript, a .zip or a web page",
    )
    export.add_argument("run", help="run folder")
    export.add_argument(
        "--format",
        choices=("onnx", "pt2", "torchscript", "zip", "web"),
        default=None,
        help="default: from --out's ending (.onnx, .pt2, .pt, .zip, .html), else onnx, which "
        "most runtimes load; model files are checked against PyTorch, and a web page against "
        "tl-studio predict in a browser, before they are kept",
    )
    export.add_argument(
        "--quantized",
        action="store_true",
        help="web page only: int8 weights, about a quarter of the model's size; refused when "
        "they change more than 2 %% of the validation images' answers",
    )
    export.add_argument("--out", required=True, help="file to write")
    export.set_defaults(func=cmd_export)


def _step(step: str) -> None:
    print(f"{step}...", file=sys.stderr)  # stdout keeps the result alone


def cmd_export(args: argparse.Namespace) -> int:
    from tl_core.common import UsageError, check_output_file, format_size
    from tl_core.export import (
        WEB_FORMAT,
        ZIP_FORMAT,
        export_model,
        export_web_page,
        export_zip,
        format_for,
    )

    check_output_file(args.out)  # before the model is built
    note_unfinished(args.run)
    model_format = format_for(args.out, args.format)
    if args.quantized and model_format != WEB_FORMAT:
        raise UsageError(
            "--quantized applies to the web page only.",
            "Add --format web (or an --out ending in .html), or leave --quantized out.",
        )
    if model_format == WEB_FORMAT:
        print(export_web_page(args.run, args.out, args.quantized, on_step=_step).text)
        return EXIT_OK
    if model_format == ZIP_FORMAT:
        path = export_zip(args.run, args.out)
        print(f"Exported the run (.zip) to {path} ({format_size(path.stat().st_size)})")
        return EXIT_OK
    result = export_model(args.run, args.out, model_format, on_step=_step)
    print(f"Exported {model_format} to {result.path} ({format_size(result.size_bytes)})")
    print(f"Check: {result.check.text}")
    if model_format == "torchscript":
        print(
            "note: TorchScript is deprecated by PyTorch; it is kept for LibTorch C++. "
            "Prefer --format onnx or pt2.",
            file=sys.stderr,
        )
    return EXIT_OK
