"""Group files: the one JSON file that says what a folder of runs trained together is, read and
written here only.

A group folder holds ordinary run folders (``tl_core.runs.layout``) and one group file:
    transfer.json        a transfer check: "pretrained" and "scratch" runs, gain, verdict
    sweep.json           a freeze-depth sweep: one row (and one run) per freeze depth
    auto.json            an automatic recipe search: its steps' decisions and runs, the best run
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tl_core.common import write_json
from tl_core.runs.checks import damaged
from tl_core.runs.layout import of_type, read_json

TRANSFER_FILE = "transfer.json"
SWEEP_FILE = "sweep.json"
AUTO_FILE = "auto.json"
TRANSFER_KIND = "transfer-check"
SWEEP_KIND = "sweep"
AUTO_KIND = "auto"
# Each kind's group file, in the order they are looked for.
GROUP_FILES = {TRANSFER_KIND: TRANSFER_FILE, SWEEP_KIND: SWEEP_FILE, AUTO_KIND: AUTO_FILE}
UNFINISHED_GROUP = "group"  # run folders without a group file yet (a sweep still training)


def group_kind(folder: str | Path) -> str | None:
    """The kind of group file in ``folder`` ("transfer-check" or "sweep"), or None."""
    return next((k for k, name in GROUP_FILES.items() if (Path(folder) / name).is_file()), None)


def read_group_file(folder: str | Path, kind: str) -> dict[str, Any]:
    """The group file of ``kind`` in ``folder``, as a JSON object.

    Raises:
        RunError: It is missing, not valid JSON, or not a JSON object.
    """
    name = GROUP_FILES[kind]
    content = read_json(Path(folder) / name)
    if not isinstance(content, dict):
        raise damaged(f"{name} should be a JSON object")
    return content


def write_group_file(folder: str | Path, kind: str, content: Mapping[str, Any]) -> None:
    """Writes the group file of ``kind`` in ``folder`` atomically."""
    write_json(Path(folder) / GROUP_FILES[kind], dict(content))


def named_runs(kind: str, content: Mapping[str, Any]) -> list[str]:
    """The run folder names a group file gives, in its order (read leniently: names of the
    wrong type are left out)."""
    if kind == TRANSFER_KIND:
        names = of_type(content.get("runs"), dict, {}).values()
    elif kind == AUTO_KIND:  # the best run first, then each step's in order
        best = of_type(content.get("best"), dict, {}).get("run")
        steps = [of_type(step, dict, {}) for step in of_type(content.get("steps"), list, [])]
        names = [best, *(name for step in steps for name in of_type(step.get("runs"), list, []))]
    else:
        names = [
            of_type(row, dict, {}).get("run") for row in of_type(content.get("rows"), list, [])
        ]
    return [name for name in names if isinstance(name, str)]
