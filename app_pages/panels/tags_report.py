"""The Data page's view of a multi-label dataset (a ``labels.csv`` of tags): its health in tags
(images per tag, tags per image, which tags appear together, images with no tag, files left
out with their reason) and a gallery to add or remove tags, saved as a new version.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.panels import retag
from tl_core.common import escape_markdown, plural
from tl_core.data import (
    SKIP_LISTED_MISSING,
    SKIP_NOT_LISTED,
    DatasetReport,
    co_occurrence,
    original_image,
    tags_per_image,
)

SCOPE = "data_tags"  # this gallery's pickers and save button
UNTAGGED = "Images with no tag"
FILTER_KEY = "data_tags_filter"
MAX_SHOWN = 24


def co_occurrence_table(report: DatasetReport) -> pd.DataFrame:
    """Images carrying each pair of tags, as a symmetric table with images per tag on the
    diagonal."""
    tags = list(report.class_names)
    table = pd.DataFrame(0, index=tags, columns=tags, dtype="int64")
    for tag, count in report.counts.items():
        table.loc[tag, tag] = count
    for (first, second), count in co_occurrence(report.items).items():
        table.loc[first, second] = table.loc[second, first] = count
    return table


def tag_health(report: DatasetReport) -> None:
    """Counts in tags, the table of tags seen together, and the files left out."""
    untagged = [item for item in report.items if not item.tags]
    left_out = [s for s in report.skipped if s.reason in (SKIP_NOT_LISTED, SKIP_LISTED_MISSING)]
    cols = st.columns(4)
    cols[0].metric("Tags", len(report.class_names))
    cols[1].metric("Tagged images", report.num_images - len(untagged))
    cols[2].metric("No tag", len(untagged))
    cols[3].metric("Left out of labels.csv", len(left_out))
    per_image = tags_per_image(report.items)
    st.caption(
        "Tags per image: "
        + ", ".join(f"{plural(n, 'image')} with {k}" for k, n in per_image.items())
        + "."
    )
    if len(report.class_names) > 1:
        st.markdown("**Tags seen together**")
        st.caption(
            "Images that carry both the row's and the column's tag; the diagonal counts the "
            "images of each tag. A tag almost always seen with another is hard to tell apart "
            "from it."
        )
        table = co_occurrence_table(report)
        st.dataframe(table, key="tag_co_occurrence")
    if left_out:
        with st.expander(f"Files left out ({len(left_out)})", icon=":material/rule:"):
            st.dataframe(
                [{"file": report.relative(s.path), "reason": s.reason} for s in left_out],
                hide_index=True,
            )


def tag_review(dataset: str, report: DatasetReport) -> None:
    """A gallery of the images of one tag (or with none), each with its tags to change."""
    with st.expander("Add or remove tags", icon=":material/sell:"):
        st.caption(
            "Pick the images' tags below; the changes are saved as a new version of the "
            "dataset, which the next training uses. Your files are never changed."
        )
        shown = st.selectbox("Show", [UNTAGGED, *report.class_names], key=f"{FILTER_KEY}:{dataset}")
        items = [
            item
            for item in report.items
            if (not item.tags if shown == UNTAGGED else shown in (item.tags or ()))
        ]
        images = [
            retag.TaggedImage(
                key=(key := original_image(report.root, item.path)),
                path=str(item.path),
                tags=item.tags or (),
                caption=escape_markdown(key),
            )
            for item in items[:MAX_SHOWN]
        ]
        if not images:
            st.caption("No image to show here.")
            return
        changes = retag.gallery(SCOPE, str(report.root), images, report.class_names)
        if len(items) > MAX_SHOWN:
            st.caption(f"{len(items) - MAX_SHOWN} more not shown.")
        retag.save_button(SCOPE, str(report.root), changes)
