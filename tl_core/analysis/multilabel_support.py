"""Which transfer tools work on a multi-label dataset (a ``labels.csv`` of tags) yet, and the
plain sentence that says so where one does not.

The backbone advisor's probe, the freeze-depth sweep and the transfer check measure and compare
*accuracy over classes* (one class per image): the probe's linear classifier, and the Wilson
intervals the sweep and the transfer check draw their verdicts from. A multi-label run's score
is a macro F1 over tags, for which none of those comparisons is worded or measured yet, so each
of these tools refuses a multi-label dataset up front rather than print a verdict its numbers
do not back. The search for wrong labels handles tags (a probe per tag and cleanlab's
multi-label search). Pages call :func:`multi_label_refusal` to grey a tool out with the same
sentence.
"""

from __future__ import annotations

from pathlib import Path

from tl_core.common import DatasetError
from tl_core.data import DatasetReport, is_multi_label

ADVISOR, LABEL_ISSUES, SWEEP, TRANSFER_CHECK = "advisor", "label_issues", "sweep", "transfer"
AUTO_SEARCH = "auto"  # ranks backbones with the advisor and depths with the sweep's intervals
_TOOL_NAMES = {
    AUTO_SEARCH: "The automatic search (Find a good model for me)",
    ADVISOR: "The backbone advisor",
    LABEL_ISSUES: "The search for wrong labels",
    SWEEP: "The freeze-depth sweep",
    TRANSFER_CHECK: "The transfer check",
}
MULTI_LABEL_TOOLS: frozenset[str] = frozenset({LABEL_ISSUES})
"""The tools that work on multi-label data: the search for wrong labels (a probe per tag and
cleanlab's multi-label confident learning, ``tl_core.analysis.multilabel_probe``)."""


def multi_label_refusal(tool: str) -> str | None:
    """The sentence saying that ``tool`` does not work on multi-label data yet; None for a tool
    that does.

    Args:
        tool: ADVISOR, AUTO_SEARCH, LABEL_ISSUES, SWEEP or TRANSFER_CHECK.
    """
    if tool in MULTI_LABEL_TOOLS:
        return None
    return (
        f"{_TOOL_NAMES[tool]} does not work on datasets with several tags per image (a "
        "labels.csv) yet: it compares accuracy over one class per image."
    )


def require_single_label(tool: str, data: DatasetReport | str | Path) -> None:
    """Refuses a multi-label dataset for a tool that does not handle one yet.

    Args:
        tool: ADVISOR, AUTO_SEARCH, LABEL_ISSUES, SWEEP or TRANSFER_CHECK.
        data: The dataset: a scan's report, or its folder or .zip.

    Raises:
        DatasetError: ``data`` is multi-label and ``tool`` does not support it.
    """
    multi = data.multi_label if isinstance(data, DatasetReport) else is_multi_label(data)
    refusal = multi_label_refusal(tool) if multi else None
    if refusal is not None:
        raise DatasetError(
            refusal,
            "Train on it directly: training, evaluation with per-tag scores, prediction and "
            "export all handle several tags per image.",
        )
