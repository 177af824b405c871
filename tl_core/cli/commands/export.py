"""``tl-studio export``: a run as ONNX, torch.export (.pt2), TorchScript or a .zip."""

from __future__ import annotations

import argparse
import sys

from tl_core.cli.output import EXIT_OK, note_unfinished


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help="export a run as ONNX, torch.export (.pt2), TorchScript or a .zip"
    )
    export.add_argument("run", help="run folder")
    export.add_argument(
        "--format",
        choices=("onnx", "pt2", "torchscript", "zip"),
        default=None,
        help="default: from --out's ending (.onnx, .pt2, .pt, .zip), else onnx, which most "
        "runtimes load; model files are checked against PyTorch before they are kept",
    )
    export.add_argument("--out", required=True, help="file to write")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from tl_core.common import check_output_file, format_size
    from tl_core.export import ZIP_FORMAT, export_model, export_zip, format_for

    check_output_file(args.out)  # before the model is built
    note_unfinished(args.run)
    model_format = format_for(args.out, args.format)
    if model_format == ZIP_FORMAT:
        path = export_zip(args.run, args.out)
        print(f"Exported the run (.zip) to {path} ({format_size(path.stat().st_size)})")
        return EXIT_OK
    result = export_model(  # steps on stderr: stdout keeps the result alone
        args.run, args.out, model_format, on_step=lambda step: print(f"{step}...", file=sys.stderr)
    )
    print(f"Exported {model_format} to {result.path} ({format_size(result.size_bytes)})")
    print(f"Check: {result.check.text}")
    if model_format == "torchscript":
        print(
            "note: TorchScript is deprecated by PyTorch; it is kept for LibTorch C++. "
            "Prefer --format onnx or pt2.",
            file=sys.stderr,
        )
    return EXIT_OK
