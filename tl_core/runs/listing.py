"""Every run and group of runs under a folder, as lists of summaries read without weights.

A group is a folder with no config.json of its own that holds a group file
(``tl_core.runs.groups``) or at least one run folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tl_core.common import RunError
from tl_core.runs.groups import UNFINISHED_GROUP, group_kind, named_runs, read_group_file
from tl_core.runs.layout import CONFIG_FILE, subfolders
from tl_core.runs.reader import RunSummary, summaries


def list_runs(root: str | Path, in_groups: bool = False) -> list[RunSummary]:
    """Every run folder under ``root``, newest first.

    A damaged run is listed when its config.json still tells what it is (loading it then says
    what is wrong); a folder that cannot be read at all is skipped.

    Args:
        root: The folder that holds run folders (and, maybe, group folders).
        in_groups: Also list the runs inside the group folders under ``root`` (transfer checks,
            sweeps; see :func:`list_groups`).
    """
    root = Path(root)
    found = summaries(subfolders(root))
    if in_groups:
        for group in list_groups(root):
            found.extend(group.runs)
    return sorted(found, key=lambda s: (s.created, s.name), reverse=True)


@dataclass(frozen=True)
class RunGroup:
    """A folder of runs trained together: a transfer check or a freeze-depth sweep.

    Attributes:
        kind: "transfer-check" or "sweep" (from the group file), or "group" while the group
            has run folders but no group file yet (a sweep still training, or one stopped).
        result: The group file's contents ({} when there is none yet, or it is unreadable).
        runs: Its runs: those the group file names first, in its order, then the others by
            folder name.
    """

    path: Path
    name: str
    kind: str
    result: dict[str, Any]
    runs: tuple[RunSummary, ...]

    @property
    def created(self) -> datetime:
        """When its first run started (for a group without runs: the folder's time)."""
        if self.runs:
            return min(run.created for run in self.runs)
        return datetime.fromtimestamp(self.path.stat().st_mtime)


def read_group(path: str | Path) -> RunGroup | None:
    """The group in folder ``path``, or None when it is not one.

    An unreadable group file shows as an empty result, so the group and its runs stay listed.
    """
    path = Path(path)
    if not path.is_dir() or (path / CONFIG_FILE).exists():
        return None
    kind, result = group_kind(path), {}
    if kind is not None:
        with contextlib.suppress(RunError):  # unreadable: the group shows without a result
            result = read_group_file(path, kind)
    runs = {run.name: run for run in summaries(subfolders(path))}
    if not runs and kind is None:
        return None
    kind = kind or UNFINISHED_GROUP
    order = [name for name in dict.fromkeys(named_runs(kind, result)) if name in runs]
    order += sorted(set(runs) - set(order))
    return RunGroup(path, path.name, kind, result, tuple(runs[name] for name in order))


def list_groups(root: str | Path) -> list[RunGroup]:
    """Every group folder directly under ``root``, newest first."""
    groups = [group for path in subfolders(Path(root)) if (group := read_group(path)) is not None]
    return sorted(groups, key=lambda g: (g.created, g.name), reverse=True)
