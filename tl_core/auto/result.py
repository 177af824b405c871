"""auto.json: what an automatic search did, decided and found, true at every moment.

The search folder is a group of ordinary run folders (``tl_core.runs.groups``) with one group
file, rewritten atomically after every step::

    {"budget_seconds": 600, "seconds": 512.3,
     "steps": [{"step": "freeze", "decision": "...", "evidence": ["..."], "runs": ["..."]}],
     "best": {"run": "final", "backbone": "...", "mode": "fine-tune", "freeze": "4",
              "lr": 0.003, "augment": "light", "val_accuracy": 0.92,
              "val_low": 0.86, "val_high": 0.96},
     "status": "running" | "completed" | "stopped" | "failed",
     "not_tried": ["..."], "plan": {...}}

The first four keys are the file's contract; "status", "not_tried" and "plan" say how far it
got, what it left out and what it had planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.auto.decisions import Decision, Measured
from tl_core.auto.plan import SearchPlan
from tl_core.common import wilson_interval
from tl_core.config import TrainConfig
from tl_core.runs import AUTO_KIND, read_group_file, write_group_file

BEST_KEYS = (
    "run",
    "backbone",
    "mode",
    "freeze",
    "lr",
    "augment",
    "val_accuracy",
    "val_low",
    "val_high",
)


@dataclass(frozen=True)
class BestRun:
    """The run the search hands over, and its recipe and accuracy with its 95 % interval."""

    run: str
    backbone: str
    mode: str
    freeze: str
    lr: float
    augment: str
    val_accuracy: float
    val_images: int

    @classmethod
    def of(cls, config: TrainConfig, measured: Measured) -> BestRun:
        """The run ``measured`` trained with ``config``."""
        return cls(
            run=measured.run,
            backbone=config.backbone,
            mode=config.mode,
            freeze=str(config.freeze),
            lr=config.lr,
            augment=config.augment,
            val_accuracy=measured.accuracy,
            val_images=measured.val_images,
        )

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(round(self.val_accuracy * self.val_images), self.val_images)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "run": self.run,
            "backbone": self.backbone,
            "mode": self.mode,
            "freeze": self.freeze,
            "lr": self.lr,
            "augment": self.augment,
            "val_accuracy": round(self.val_accuracy, 4),
            "val_low": round(low, 4),
            "val_high": round(high, 4),
        }


@dataclass
class AutoResult:
    """A search as it stands: written to ``path/auto.json`` by :meth:`write`.

    Attributes:
        path: The search folder.
        budget_seconds: The budget it was given.
        seconds: Time used so far (pauses left out).
        decisions: The steps done, in order.
        best: The run handed over (None until one has an accuracy).
        status: "running", "completed", "stopped" or "failed".
        not_tried: What the search skipped or did not reach, and why, in sentences.
        plan: The plan it started from.
    """

    path: Path
    budget_seconds: float
    seconds: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    best: BestRun | None = None
    status: str = "running"
    not_tried: list[str] = field(default_factory=list)
    plan: SearchPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_seconds": self.budget_seconds,
            "seconds": round(self.seconds, 2),
            "steps": [
                {
                    "step": d.step,
                    "decision": d.decision,
                    "evidence": list(d.evidence),
                    "runs": list(d.runs),
                }
                for d in self.decisions
            ],
            "best": self.best.to_dict() if self.best is not None else None,
            "status": self.status,
            "not_tried": list(self.not_tried),
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }

    def write(self) -> None:
        """Writes auto.json atomically (never half a file)."""
        write_group_file(self.path, AUTO_KIND, self.to_dict())


def read_auto(folder: str | Path) -> dict[str, Any]:
    """A search folder's auto.json, as written.

    Raises:
        RunError: It is missing, unreadable, or not a JSON object.
    """
    return read_group_file(folder, AUTO_KIND)
