"""Every run on disk as one table, its groups in words, and what sets picked runs apart.

The Compare page lists runs with the settings and results that tell them apart, shows what
each group of runs (a transfer check, a freeze-depth sweep) found, and puts the settings of a
few picked runs side by side. Everything is read from the run folders (see
``tl_core.runs.reader`` and ``tl_core.runs.listing``), never from a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tl_core.common import RunError, TLStudioError, plural
from tl_core.config import FreezeDepth
from tl_core.runs.groups import AUTO_KIND, SWEEP_KIND, TRANSFER_KIND
from tl_core.runs.layout import CONFIG_FILE, METRICS_FILE, read_json
from tl_core.runs.listing import RunGroup, list_groups, list_runs, read_group
from tl_core.runs.reader import RunSummary
from tl_core.runs.workspace import Workspace

GROUP_KIND_NAMES = {
    TRANSFER_KIND: "transfer check",
    SWEEP_KIND: "freeze-depth sweep",
    AUTO_KIND: "automatic search",
}
DIFFERS = "differs"
MISSING = "–"  # a setting a run does not record (an older run, or an edited file)
SWEEP_WAITING = ("pending", "running")  # statuses of sweep rows that have not finished


@dataclass(frozen=True)
class RunDetails:
    """A run as the comparison shows it: its summary, full settings and history.

    Attributes:
        group: The name of the group folder the run belongs to ("" for a single run).
        settings: Every setting that decides the run, by name, as text.
        history: One row per finished epoch (empty when none finished).
    """

    summary: RunSummary
    group: str
    settings: dict[str, str]
    history: pd.DataFrame

    @property
    def path(self) -> Path:
        return self.summary.path

    @property
    def label(self) -> str:
        """The run's name, after its group's name for a run inside a group."""
        return f"{self.group}/{self.summary.name}" if self.group else self.summary.name

    @property
    def seconds(self) -> float:
        """Training time: the sum of the epochs' times."""
        if "seconds" not in self.history:
            return 0.0
        return float(pd.to_numeric(self.history["seconds"], errors="coerce").fillna(0).sum())


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except RunError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str:
    return MISSING if value is None else str(value)


def _settings(config: Mapping[str, Any], summary: RunSummary) -> dict[str, str]:
    """The recipe of a run: the training settings, then what the model and device made of
    them (the augmentation "auto" chose, the input size, what trains)."""
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    preprocessing = (
        model.get("preprocessing") if isinstance(model.get("preprocessing"), dict) else {}
    )
    freeze = model.get("freeze") if isinstance(model.get("freeze"), dict) else {}
    settings = {str(key): _text(value) for key, value in train.items()}
    settings.update(
        {
            "what trains": summary.freeze,
            "augmentation used": _text(model.get("augment", train.get("augment"))),
            "weights source": _text(model.get("weights_source")),
            "input size": _text(preprocessing.get("image_size")),
            "trainable parameters": _text(freeze.get("trainable_params")),
            "trained on": _text(config.get("device")),
        }
    )
    return settings


def run_details(summary: RunSummary, group: str = "") -> RunDetails:
    """Reads what the comparison needs of a summarised run (files already checked to exist
    are read leniently: a damaged file shows as missing values, never as an error)."""
    config = _json_object(summary.path / CONFIG_FILE)
    metrics = _json_object(summary.path / METRICS_FILE)
    history = metrics.get("history")
    rows = [row for row in history if isinstance(row, dict)] if isinstance(history, list) else []
    return RunDetails(summary, group, _settings(config, summary), pd.DataFrame(rows))


def load_runs(root: str | Path) -> tuple[list[RunDetails], list[RunGroup]]:
    """Every run under ``root`` (single runs and the runs inside groups), newest first, and
    the groups, newest first."""
    groups = list_groups(root)
    group_of = {run.path: group.name for group in groups for run in group.runs}
    runs = [run_details(s, group_of.get(s.path, "")) for s in list_runs(root, in_groups=True)]
    return runs, groups


def runs_frame(runs: Sequence[RunDetails]) -> pd.DataFrame:
    """One row per run, with the columns a user sorts by, in the order given.

    The ``path`` column identifies the run (the page hides it).
    """
    rows = []
    for run in runs:
        s = run.summary
        planned = s.epochs_planned if s.epochs_planned is not None else "?"
        rows.append(
            {
                "run": run.label,
                "group": run.group,
                "backbone": s.backbone,
                "what trains": s.freeze,
                "pretrained": s.pretrained,
                "epochs": f"{s.epochs_done}/{planned}",
                "augmentation": run.settings["augmentation used"],
                "best val accuracy": s.best_val_accuracy,
                "accuracy (95 % interval)": s.accuracy_text,
                "training time (s)": run.seconds,
                "status": s.status,
                "date": s.created,
                "note": s.note,
                "path": str(s.path),
            }
        )
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def _percent(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def group_outcome(group: RunGroup) -> str:
    """What a group found, in words: a transfer check's verdict, a sweep's best depth."""
    result = group.result
    if group.kind == TRANSFER_KIND:
        gain = result.get("gain")
        gain_text = f"{gain:+.1f} points" if isinstance(gain, int | float) else "gain ?"
        numbers = (
            f"pretrained {_percent(result.get('pretrained'))}, from scratch "
            f"{_percent(result.get('scratch'))} ({gain_text})"
        )
        verdict = result.get("verdict")
        return f"{verdict} ({numbers})" if isinstance(verdict, str) and verdict else numbers
    if group.kind == SWEEP_KIND:
        rows = [row for row in result.get("rows") or [] if isinstance(row, dict)]
        # A sweep rewrites its file as it goes: rows still to train say so.
        waiting = sum(row.get("status") in SWEEP_WAITING for row in rows)
        best = result.get("best")
        if best is None:
            return "Still training: no depth has finished yet." if waiting else "No result."
        row = next((r for r in rows if str(r.get("freeze")) == str(best)), {})
        run = next((r for r in group.runs if r.name == row.get("run")), None)
        depth = run.freeze if run is not None else _best_depth_words(best)
        found = f"Best depth: {depth} ({_percent(row.get('best_val_accuracy'))})"
        return f"{found} so far; {plural(waiting, 'depth')} to go." if waiting else f"{found}."
    if group.kind == AUTO_KIND:
        best = result.get("best")
        if isinstance(best, dict):
            return (
                f"Best run: {best.get('run')} ({best.get('backbone')}, freeze "
                f"{best.get('freeze')}, {_percent(best.get('val_accuracy'))})."
            )
    return f"No result yet: {plural(len(group.runs), 'run')} so far, still training or stopped."


def _best_depth_words(best: Any) -> str:
    """A sweep's best depth in words, when its run cannot be read (its text if not a depth)."""
    try:
        return FreezeDepth.parse(best).words()
    except TLStudioError:
        return str(best)


def groups_frame(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """One row per group: its kind, name, what it found, its runs, when it started."""
    rows = [
        {
            "kind": GROUP_KIND_NAMES.get(group.kind, "unfinished group"),
            "group": group.name,
            "outcome": group_outcome(group),
            "runs": len(group.runs),
            "date": group.created,
            "path": str(group.path),
        }
        for group in groups
    ]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def differing_settings(runs: Sequence[RunDetails]) -> list[str]:
    """The settings whose values are not the same in every run, in settings order."""
    names = dict.fromkeys(name for run in runs for name in run.settings)
    return [name for name in names if len({run.settings.get(name, MISSING) for run in runs}) > 1]


def settings_frame(runs: Sequence[RunDetails]) -> pd.DataFrame:
    """The settings of ``runs`` side by side: one row per setting, one column per run, and a
    ``differs`` column that is True where the runs' values are not all the same."""
    differing = set(differing_settings(runs))
    names = list(dict.fromkeys(name for run in runs for name in run.settings))
    columns = _unique_labels(run.label for run in runs)
    frame = pd.DataFrame(
        {
            column: [run.settings.get(name, MISSING) for name in names]
            for column, run in zip(columns, runs, strict=True)
        },
        index=pd.Index(names, name="setting"),
    )
    frame[DIFFERS] = [name in differing for name in names]
    return frame


def _unique_labels(labels: Iterable[str]) -> list[str]:
    """Column names for runs: their labels, numbered where two are the same."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def histories(runs: Sequence[RunDetails]) -> dict[str, pd.DataFrame]:
    """Each run's per-epoch history under its label, for an overlay of their curves."""
    return dict(
        zip(_unique_labels(run.label for run in runs), (r.history for r in runs), strict=True)
    )


def deletion_targets(runs: Sequence[RunDetails], groups: Sequence[RunGroup]) -> dict[Path, str]:
    """What deleting the picked ``runs`` and ``groups`` removes, each folder with its words.

    Each picked group goes whole; of the picked runs, only single runs go: a run inside a
    group is deleted with its group, whose result names it.
    """
    targets = {
        group.path: f"the group {group.name} and its {plural(len(group.runs), 'run')}"
        for group in groups
    }
    targets |= {run.path: f"the run {run.label}" for run in runs if not run.group}
    return targets


def delete_run_or_group(workspace: Workspace, path: str | Path) -> None:
    """Deletes a single run, or a whole group with all its runs, for good.

    A run inside a group is only deleted with its group: the group's result names it.

    Raises:
        RunError: ``path`` is a run inside a group, is not directly in the workspace's runs
            folder, or a training is writing to it (for a group: to one of its runs).
    """
    path = Path(path).resolve()
    if path.parent != workspace.runs.resolve():
        if read_group(path.parent) is not None:
            raise RunError(
                f"The run {path.name} belongs to the group {path.parent.name}, so it was not "
                "deleted.",
                "Delete the whole group instead: its result compares all of its runs.",
            )
        raise RunError(
            f"{path} is not a run of this workspace, so it was not deleted.",
            f"Only runs and groups directly inside {workspace.runs} are deleted here.",
        )
    group = read_group(path)
    live = [run.name for run in group.runs if run.status == "running"] if group else []
    if live:
        raise RunError(
            f"The group {path.name} is still training ({', '.join(live)}), so it was not deleted.",
            "Stop the training, or wait for it to finish, then delete the group.",
        )
    workspace.delete_run(path)
