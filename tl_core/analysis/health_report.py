"""The whole health check of a dataset, as ``tl-studio check`` prints it and pages can show it.

It gathers what the scan found (classes, skipped files, copies), what the split would do with
it (sizes, validation images with a copy in training before and after the split keeps copies
together) and, when asked for, the suspected label errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.common import TLStudioError
from tl_core.data import (
    DatasetReport,
    Issue,
    Leakage,
    check_validation_classes,
    overlap_issue,
    split_leakage,
)

if TYPE_CHECKING:  # label_issues imports torch, which a plain check does not need
    from tl_core.analysis.label_issues import LabelIssue


@dataclass(frozen=True)
class HealthCheck:
    """A scanned dataset, judged as training data.

    Attributes:
        report: The scan.
        warnings: The scan's warnings, plus the leakage left by the split, if any.
        problems: Sentences on what blocks training (empty when it can train).
        split: Training and validation image counts, when the split could be made.
        leakage: Copies across the split before and after it kept copies together; None with a
            separate validation folder (that is not compared) or when the split failed.
        label_issues: Suspected label errors, most suspicious first; None when not looked for.
    """

    report: DatasetReport
    warnings: tuple[Issue, ...]
    problems: tuple[str, ...]
    split: tuple[int, int] | None = None
    leakage: Leakage | None = None
    label_issues: tuple[LabelIssue, ...] | None = None

    @property
    def can_train(self) -> bool:
        return not self.problems

    def split_sentence(self) -> str | None:
        """The split training would make, in words; None when it could not be made."""
        if not self.split:
            return None
        return f"Split: {self.split[0]} training / {self.split[1]} validation images."

    def leakage_sentence(self) -> str | None:
        """How many validation images have a copy in training, with and without the split
        that keeps copies on one side; None when no split ignoring copies would leak."""
        if not (self.leakage and self.leakage.before):
            return None
        return (
            f"Validation images with a copy in training: {self.leakage.before} under a split "
            f"that ignores copies, {self.leakage.after} with this one, which keeps copies on "
            "one side."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON health report: the scan's summary (``DatasetReport.to_dict``) with the
        warnings, ``can_train``, ``blocking_problems``, ``split``, ``leakage`` and, when they
        were looked for, ``label_issues``."""
        data = self.report.to_dict()
        data["warnings"] = [issue.to_dict() for issue in self.warnings]
        data["can_train"] = self.can_train
        data["blocking_problems"] = list(self.problems)
        if self.split:
            data["split"] = {"train": self.split[0], "val": self.split[1]}
        data["leakage"] = self.leakage.to_dict() if self.leakage else None
        if self.label_issues is not None:
            data["label_issues"] = [issue.to_dict(self.report) for issue in self.label_issues]
        return data


def check_health(
    report: DatasetReport,
    val_report: DatasetReport | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> HealthCheck:
    """Judges a scanned dataset, split as training would split it.

    Args:
        report: The scanned training data.
        val_report: A separate validation folder, scanned; None splits ``report``.
        val_fraction: Share of each class held out, without ``val_report``.
        seed: Seed of the split.
    """
    problems = [issue.message for issue in report.errors]
    warnings = list(report.warnings)
    split = leakage = None
    if report.can_train:
        try:
            if val_report is not None:
                check_validation_classes(report, val_report)
                split = (report.num_images, val_report.num_images)
            else:
                leakage = split_leakage(report, val_fraction, seed)
                split = (report.num_images - leakage.num_val, leakage.num_val)
                overlap = overlap_issue(leakage.after, leakage.num_val)
                warnings += [overlap] if overlap else []
        except TLStudioError as exc:
            problems.append(str(exc))
    return HealthCheck(report, tuple(warnings), tuple(problems), split, leakage)
