"""The Data page's gallery of near-identical images: each group of copies side by side, with a
decision per image (exclude the extra copies, relabel the one filed under the wrong class, or
keep), saved as a new version of the dataset like every other fix (``_decisions``)."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from app_pages.panels import decisions as decisions_panel
from tl_core.common import escape_markdown, plural
from tl_core.data import DatasetReport, Decision, DuplicateGroup, original_image, reviewed

SCOPE = "duplicates"  # this gallery's choices and save button (see _decisions)
TITLE = "Near-identical images"
MAX_GROUPS = 20  # conflicts first, so the ones that matter most are never cut off
CONFLICT = (
    "A conflict is a group of copies filed under different classes: one picture cannot be "
    "both, so at least one of its labels is wrong."
)
INTRO = (
    "Copies of one picture (byte-identical, resized, re-encoded or slightly cropped) add "
    "nothing to training, and the split keeps each group on one side. Exclude the extra "
    "copies, relabel the one in the wrong class, or keep them."
)


def _suggested(group: DuplicateGroup, index: int) -> str | None:
    """For a conflict, the label the other copies carry most: the likeliest right one."""
    others = Counter(label for i, label in enumerate(group.labels) if i != index)
    label, _ = others.most_common(1)[0]
    return label if label != group.labels[index] else None


def _candidates(report: DatasetReport, group: DuplicateGroup) -> list[decisions_panel.Candidate]:
    return [
        decisions_panel.Candidate(
            key=original_image(report.root, path),
            path=str(path),
            label=label,
            caption=f"{escape_markdown(report.relative(path))} · **{escape_markdown(label)}**",
            suggested=_suggested(group, index) if group.across_classes else None,
        )
        for index, (path, label) in enumerate(zip(group.paths, group.labels, strict=True))
    ]


def duplicates_review(dataset: str, report: DatasetReport) -> None:
    """The panel (nothing when the dataset holds no copies): conflicts first, then the rest."""
    if not report.near_duplicates:
        return
    done = reviewed(report.root)
    exact = {frozenset(group.paths) for group in report.duplicates}
    # Groups whose every image was decided about in this version need nothing more.
    open_groups = [
        group
        for group in report.near_duplicates
        if not {original_image(report.root, p) for p in group.paths} <= done
    ]
    open_groups.sort(key=lambda group: not group.across_classes)  # stable: conflicts first
    conflicts = sum(group.across_classes for group in open_groups)
    title = f"{TITLE} ({plural(len(open_groups), 'group')}"
    title += f", {plural(conflicts, 'conflict')})" if conflicts else ")"
    with st.expander(title, icon=":material/filter_none:", expanded=bool(conflicts)):
        st.caption(f"{INTRO} {CONFLICT}")
        if decided := len(report.near_duplicates) - len(open_groups):
            st.caption(f"{plural(decided, 'group')} already decided in this version.")
        decisions: dict[str, Decision] = {}
        for number, group in enumerate(open_groups[:MAX_GROUPS], 1):
            kind = "identical files" if frozenset(group.paths) in exact else "near-identical"
            labels = ", ".join(escape_markdown(name) for name in sorted(set(group.labels)))
            head = f"**Group {number}** · {plural(len(group.paths), 'image')}, {kind} · {labels}"
            if group.across_classes:
                head += " · :red-badge[conflict]"
            st.markdown(head)
            # A tagged image's relabel replaces its whole tag set: offer only the set its
            # copies carry, not each single tag (tags are added or removed on their own panel).
            relabels = [] if report.multi_label else report.class_names
            decisions |= decisions_panel.gallery(
                SCOPE, dataset, _candidates(report, group), relabels
            )
        if len(open_groups) > MAX_GROUPS:
            st.caption(f"{len(open_groups) - MAX_GROUPS} more groups not shown.")
        decisions_panel.save_button(SCOPE, dataset, report.root, report.class_names, decisions)
