"""A dataset on screen: its health report, scanned once per change of its files, and thumbnails."""

from __future__ import annotations

import collections
import io
import threading
from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from PIL import ImageOps

from tl_core.common import (
    CountProgress,
    TLStudioError,
    escape_markdown,
    plural,
    shorten,
)
from tl_core.data import DatasetReport, load_image, scan_dataset
from tl_core.figures import STATIC_CHART_CONFIG, class_counts_figure
from tl_core.runs import (
    folder_signature,
)

THUMB_SIZE = 96
THUMBS_PER_CLASS = 8
CAPTION_CHAR_PX = 8  # one caption character per 8 pixels of thumbnail width keeps one line


class _ReportCache:
    """The most recent health reports, for every session of the process.

    Not ``st.cache_data``: a scan draws its progress bar, which a cached function may not do.
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._reports: collections.OrderedDict[tuple, DatasetReport] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> DatasetReport | None:
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
            return self._reports.get(key)

    def put(self, key: tuple, report: DatasetReport) -> None:
        with self._lock:
            self._reports[key] = report
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _reports() -> _ReportCache:
    return _ReportCache()


def scan(path: str | Path) -> DatasetReport:
    """The health report of a dataset folder, rescanned only when its files change; a bar
    with the files checked and the time left shows while it scans."""
    key = (str(path), folder_signature(path))  # a changed folder is scanned again
    if (report := _reports().get(key)) is not None:
        return report
    bar = st.empty()
    fraction = [0.0]
    lines = CountProgress(
        "Checking every image", "files", lambda line, _: bar.progress(fraction[0], text=line)
    )

    def progress(done: int, total: int) -> None:
        fraction[0] = done / total if total else 1.0
        lines(done, total)

    try:
        report = scan_dataset(path, progress=progress)
    finally:
        bar.empty()
    _reports().put(key, report)
    return report


@st.cache_data(max_entries=4000, show_spinner=False)
def thumbnail(path: str, size: int = THUMB_SIZE) -> bytes | None:
    """A small square JPEG of an image (None if it cannot be read)."""
    try:
        image = load_image(path, draft_size=size * 2)
    except TLStudioError:
        return None
    buffer = io.BytesIO()
    ImageOps.fit(image, (size, size)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def image_grid(
    paths: Sequence[str | Path], captions: Sequence[str] | None = None, size: int = THUMB_SIZE
) -> None:
    """Thumbnails in rows that wrap, spaced apart; unreadable files are left out.

    Without ``captions``, each thumbnail shows its file name, shortened with an ellipsis to
    one line under the thumbnail.
    """
    if captions is None:
        captions = [shorten(Path(p).name, size // CAPTION_CHAR_PX) for p in paths]
    shown = [
        (thumb, escape_markdown(caption))  # captions are Markdown; names come from users
        for p, caption in zip(paths, captions, strict=True)
        if (thumb := thumbnail(str(p), size)) is not None
    ]
    if not shown:
        return
    # One image per cell of a wrapping row: a list given to one st.image has no column gap.
    with st.container(horizontal=True, gap="small"):
        for thumb, caption in shown:
            st.image(thumb, caption=caption, width=size)


def render_report(
    report: DatasetReport, thumbnails: bool = True, duplicate_table: bool = True
) -> None:
    """The dataset health report: totals, images per class, problems, thumbnails.

    ``duplicate_table=False`` leaves out the table of identical files, for a page that shows
    them in its own gallery of copies (the Data page's near-identical images).
    """
    cols = st.columns(4)
    cols[0].metric("Tags" if report.multi_label else "Classes", len(report.class_names))
    cols[1].metric("Images", report.num_images)
    cols[2].metric("Skipped files", len(report.skipped))
    cols[3].metric("Duplicate groups", len(report.duplicates))
    for issue in report.errors:
        st.error(escape_markdown(issue.message), icon=":material/block:")
    for issue in report.warnings:
        st.warning(escape_markdown(issue.message), icon=":material/warning:")
    if report.class_names:
        # Keyed by the folder it shows: a page may draw two reports (a rejected upload beside
        # the current dataset), and two equal keys would end the page.
        st.plotly_chart(
            class_counts_figure(report.counts),
            key=f"class_counts:{report.root}",
            config=STATIC_CHART_CONFIG,
        )
    if report.skipped:
        with st.expander(f"Skipped files ({len(report.skipped)})"):
            st.dataframe(
                [{"file": report.relative(s.path), "reason": s.reason} for s in report.skipped],
                hide_index=True,
            )
    if report.duplicates and duplicate_table:
        with st.expander(f"Duplicates ({plural(len(report.duplicates), 'group')})"):
            st.dataframe(
                [
                    {
                        "files": " = ".join(report.relative(p) for p in group.paths),
                        "classes": ", ".join(sorted(set(group.labels))),
                    }
                    for group in report.duplicates
                ],
                hide_index=True,
            )
    if not thumbnails:
        return
    by_class: dict[str, list[Path]] = {name: [] for name in report.class_names}
    for item in report.items:
        for name in (item.tags or ()) if report.multi_label else (item.label,):
            by_class[name].append(item.path)
    for name, paths in by_class.items():
        more = len(paths) - THUMBS_PER_CLASS
        st.markdown(
            f"**{escape_markdown(name)}** · {plural(len(paths), 'image')}"
            + (f" ({more:,} more not shown)" if more > 0 else "")
        )
        image_grid(paths[:THUMBS_PER_CLASS])
