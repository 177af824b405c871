"""Per-tag thresholds of a multi-label run: from which sigmoid probability each tag counts as
present in an image.

After training, each tag's threshold is chosen on the validation images to maximise that tag's
F1 (:func:`best_thresholds`) and kept in the run folder (``thresholds.json``). The user may move
them (the Evaluate page calls :func:`set_thresholds`); prediction, evaluation and every export
read them back with :func:`read_thresholds`. A run without the file uses 0.5 for every tag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tl_core.common import RunError, write_json
from tl_core.inference.calibration import Calibration
from tl_core.inference.multilabel_scores import DEFAULT_THRESHOLD, best_thresholds
from tl_core.runs import THRESHOLDS_FILE, Run, as_run, read_json_or_none

CHOSEN = "chosen on the validation images to maximise each tag's F1"
EDITED = "edited by hand"
NOT_CALIBRATED = Calibration(
    note="a multi-label run: each tag's sigmoid is read at its threshold, not calibrated."
)
"""A multi-label run's calibration: a temperature calibrates a softmax over classes, which a
run with one sigmoid per tag does not have."""


def write_thresholds(
    run_dir: str | Path,
    tags: Sequence[str],
    values: Sequence[float],
    source: str = CHOSEN,
    num_images: int | None = None,
) -> dict[str, float]:
    """Writes ``thresholds.json`` atomically: one threshold per tag and how it was set.

    Returns:
        The thresholds by tag.
    """
    thresholds = {tag: float(value) for tag, value in zip(tags, values, strict=True)}
    write_json(
        Path(run_dir) / THRESHOLDS_FILE,
        {
            "thresholds": thresholds,
            "source": source,
            "validation_images": num_images,
            "updated": datetime.now().isoformat(timespec="seconds"),
        },
    )
    return thresholds


def choose_thresholds(
    run_dir: str | Path, tags: Sequence[str], probabilities, targets
) -> dict[str, float]:
    """Chooses each tag's F1-maximising threshold on validation outputs and writes them.

    Args:
        run_dir: The run folder.
        tags: The run's tags, in output order.
        probabilities: Sigmoid probabilities of the validation images, (images, tags).
        targets: Their multi-hot tags, (images, tags).
    """
    values = best_thresholds(probabilities, targets)
    return write_thresholds(run_dir, tags, values, CHOSEN, len(probabilities))


def threshold_record(run: Run | str | Path) -> dict[str, Any]:
    """What ``thresholds.json`` holds (thresholds by tag, how they were set), with 0.5 for a
    tag it lacks; ``source`` says "default" when the run has no such file."""
    run = as_run(run)
    data = read_json_or_none(run.path / THRESHOLDS_FILE)
    stored = data.get("thresholds") if isinstance(data, dict) else None
    stored = stored if isinstance(stored, dict) else {}
    thresholds = {}
    for tag in run.labels:
        value = stored.get(tag)
        valid = isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1
        thresholds[tag] = float(value) if valid else DEFAULT_THRESHOLD
    return {
        "thresholds": thresholds,
        "source": data.get("source", "") if stored else "default (0.5 for every tag)",
        "validation_images": data.get("validation_images") if stored else None,
    }


def read_thresholds(run: Run | str | Path) -> list[float]:
    """The run's thresholds, one per tag in output order (0.5 where none was recorded)."""
    run = as_run(run)
    return list(threshold_record(run)["thresholds"].values())


def set_thresholds(run: Run | str | Path, changes: Mapping[str, float]) -> dict[str, float]:
    """Moves some tags' thresholds and rewrites ``thresholds.json`` atomically; the other tags
    keep theirs.

    Returns:
        Every tag's threshold after the change.

    Raises:
        RunError: The run is not multi-label, a tag is not the run's, or a threshold is not a
            number strictly between 0 and 1.
    """
    run = as_run(run)
    if not run.multi_label:
        raise RunError(
            f"The run {run.path.name} gives one class per image: it has no per-tag thresholds.",
            "Thresholds apply to runs trained on a dataset with a labels.csv.",
        )
    unknown = sorted(set(changes) - set(run.labels))
    if unknown:
        raise RunError(
            f"{', '.join(map(repr, unknown))} is not a tag of this run.",
            "Pick one of: " + ", ".join(run.labels) + ".",
        )
    for tag, value in changes.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1):
            raise RunError(
                f"The threshold of {tag!r} must be a number between 0 and 1, not {value!r}.",
                "A tag counts as present from that probability on; 0.5 is neutral.",
            )
    record = threshold_record(run)
    thresholds = {**record["thresholds"], **{k: float(v) for k, v in changes.items()}}
    return write_thresholds(
        run.path,
        list(thresholds),
        list(thresholds.values()),
        EDITED,
        record["validation_images"],
    )
