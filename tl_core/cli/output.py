"""What every command prints the same way: exit codes, tables, JSON, errors as sentences, and
the note that a run is unfinished."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tl_core.common import TLStudioError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def dump_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    print()


def print_error(message: str, hint: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def print_skipped_files(skipped: Sequence[tuple[str, str]]) -> None:
    """The files of a dataset that cannot be used, each with the reason, as ``check`` and
    ``advise`` list them: (path relative to the dataset, reason) pairs."""
    if skipped:
        print(f"\nSkipped {len(skipped)} files:")
        for path, reason in skipped:
            print(f"  {path}: {reason}")


def note_unfinished(run: str | Path) -> None:
    """Says on stderr when a run is still training or was interrupted: its weights are used
    as they are on disk (the best epoch saved so far)."""
    from tl_core.runs import METRICS_FILE, WEIGHTS_FILE, live_status, weights_metadata

    run = Path(run)
    try:
        status = json.loads((run / METRICS_FILE).read_text()).get("status")
        epoch = weights_metadata(run / WEIGHTS_FILE).get("epoch")
    except (OSError, ValueError, AttributeError, TLStudioError):
        return  # an export, or a damaged run: loading it says what is wrong
    which = f"the weights it saved from epoch {epoch}" if epoch else "the weights it saved"
    status = live_status(status, run)
    if status == "interrupted":
        print(
            f"note: the run {run.name} was interrupted before it finished (its training "
            f"process ended); using {which}.",
            file=sys.stderr,
        )
    elif status == "running":
        print(f"note: the run {run.name} is still training; using {which}.", file=sys.stderr)
