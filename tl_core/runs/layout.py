"""Run folders on disk: what each file is called, new folders for runs, and whether a run is
still being written. Every file is written atomically (``tl_core.runs.writer``) and read back by
``tl_core.runs.reader``; group folders and their group files are ``tl_core.runs.groups``'.

A run folder holds:
    config.json          everything needed to rebuild the model and its preprocessing
    labels.json          class names in output-index order
    metrics.json         per-epoch history, status, and the epoch (with its validation
                         accuracy) whose weights model.safetensors holds
    model.safetensors    best weights (by validation accuracy), their epoch in the metadata
    split.json           which images were used for training and validation
    val_predictions.csv  the best model's predictions on the validation images
    note.txt             the user's short note on the run (optional, editable at any time)
    calibration.json     the temperature that calibrates the probabilities (newer runs)
    open_set.safetensors what "not one of my classes" is measured against (newer runs)
    thresholds.json      multi-label runs: each tag's threshold on its sigmoid probability,
                         chosen on the validation images or edited since
    .lock                held by the training process while it writes (see tl_core.runs.locks)

Runs trained together live in a *group* folder beside single runs: the group holds ordinary
run folders and one JSON file that says what the group is (see ``tl_core.runs.groups``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from tl_core.common import RunError, check_output_folder
from tl_core.runs.checks import damaged
from tl_core.runs.locks import is_locked

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
SPLIT_FILE = "split.json"
PREDICTIONS_FILE = "val_predictions.csv"
NOTE_FILE = "note.txt"
CALIBRATION_FILE = "calibration.json"  # see tl_core.inference.calibration
OPEN_SET_FILE = "open_set.safetensors"  # see tl_core.inference.open_set
THRESHOLDS_FILE = "thresholds.json"  # see tl_core.inference.thresholds
MULTI_LABEL_TASK = "multi_label"  # config.json's model "task" for a run with one output per tag
# What a multi-label run's "accuracy" is, in metrics.json's "accuracy_metric": the mean of the
# tags' F1, each output read as present from a probability of 0.5 (thresholds come after).
MULTI_LABEL_METRIC = "macro F1 at threshold 0.5"
MAX_NOTE_LENGTH = 200


def run_is_live(path: str | Path) -> bool:
    """Whether a process is still training into the run folder ``path``.

    A run whose metrics still say "running" but that is not live was interrupted (its process
    was killed, or the machine stopped). Where this cannot be told, a run counts as live.
    """
    return is_locked(path) is not False


def live_status(status: str, path: str | Path) -> str:
    """The status to show for a run: "interrupted" for a "running" run whose process is gone."""
    return "interrupted" if status == "running" and not run_is_live(path) else status


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(
            f"{Path(path).name} is missing from the run folder {Path(path).parent}.",
            "Pick another run, or train again: the run may have been interrupted.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(f"{Path(path).name} is not valid JSON ({exc})") from None


def read_json_or_none(path: Path) -> Any:
    """A JSON file of a run, or None when it is missing or unreadable."""
    try:
        return read_json(path)
    except RunError:
        return None


def of_type(value: Any, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """``value`` if it is of ``kind``, else ``default``; true and false are never numbers.

    A summary shows what it can of a run whose files were edited; loading the run then says
    what is wrong with it.
    """
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def subfolders(root: Path) -> list[Path]:
    """The folders directly in ``root``, by name ([] when it is missing or not a folder)."""
    try:
        return sorted(path for path in root.iterdir() if path.is_dir())
    except OSError:  # missing, or not a folder
        return []


def new_run_dir(root: str | Path, backbone: str) -> Path:
    """Creates a new, uniquely named run folder such as ``20261122-204512-resnet18``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe_backbone = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{safe_backbone}"
    for attempt in range(1000):
        path = root / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"Could not create a new run folder in {root}.")


def taken_error(path: Path) -> RunError:
    return RunError(
        f"The run folder {path} already exists and is not empty.",
        "Choose a new folder, so no earlier run is overwritten.",
    )


def require_new_run_dir(path: str | Path) -> Path:
    """Checks that ``path`` is free for a new run: missing, or an empty folder, and writable.

    Raises:
        RunError: It holds files, which a new run must never overwrite.
        TLStudioError: It cannot be created or written (read-only, no permission, a file in
            the way, a name too long).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise taken_error(path)
    check_output_folder(path)
    return path
