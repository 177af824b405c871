"""What the pages share: session keys, the workspace, the job registry, the sidebar, widgets.

``app.py`` registers pages explicitly with ``st.navigation``, so this module is never shown
as a page. ``st.session_state`` holds only ids and paths (dataset, config dict, job id, run),
so a browser reload or a page switch re-attaches to the same data, job and run.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import streamlit as st
from PIL import ImageOps
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.uploaded_file_manager import UploadedFile

from app_pages import _queue
from tl_core.common import (
    CountProgress,
    TLStudioError,
    describe_devices,
    escape_markdown,
    explain_os_error,
    format_size,
    os_error_in,
    plural,
    shorten,
)
from tl_core.config import TrainConfig
from tl_core.data import DatasetReport, load_image, scan_dataset
from tl_core.figures import STATIC_CHART_CONFIG, class_counts_figure
from tl_core.jobs import QUEUE_FILE, TRAINING_KINDS, JobScheduler, TrainingJob
from tl_core.runs import (
    MAX_NOTE_LENGTH,
    RunSummary,
    Workspace,
    folder_signature,
    list_runs,
    preferred_run,
    write_note,
)

DATASET_KEY = "dataset_path"
CONFIG_KEY = "train_config"
JOB_KEY = "job_id"
RUN_KEY = "run_path"
CLEANED_KEY = "uploads_cleaned"
# The Model page's backbone widgets, which the backbone advisor's "Use ..." button resets.
BACKBONE_KEY = "model_backbone"
TIMM_NAME_KEY = "model_timm_name"

DATA_PAGE = "app_pages/data.py"
MODEL_PAGE = "app_pages/model.py"
TRAIN_PAGE = "app_pages/train.py"
EVALUATE_PAGE = "app_pages/evaluate.py"
PREDICT_PAGE = "app_pages/predict.py"
EXPORT_PAGE = "app_pages/export.py"
COMPARE_PAGE = "app_pages/compare.py"
WORKSPACE_PAGE = "app_pages/workspace.py"
# Shipped with the app and sent inline (an SVG icon becomes a data: URL), so no page load
# reaches the internet: a ":material/...:" page icon is fetched from fonts.gstatic.com.
FAVICON = Path(__file__).resolve().parent.parent / "assets" / "favicon.svg"

logger = logging.getLogger("tl_studio.app")
Drawing = Callable[..., None]  # a function that draws part of a page

THUMB_SIZE = 96
THUMBS_PER_CLASS = 8
CAPTION_CHAR_PX = 8  # one caption character per 8 pixels of thumbnail width keeps one line

# Streamlit holds every upload in the server's memory until the page has saved it, several
# at a time, so each is capped to what a workstation can hold. The largest cap is also
# server.maxUploadSize in .streamlit/config.toml, which the server itself enforces.
ARCHIVE_UPLOAD_MB = 1024
WEIGHTS_UPLOAD_MB = 1024
IMAGE_UPLOAD_MB = 50
FOLDER_LABEL = "Or a folder on this computer"
FOLDER_HELP = (
    "A folder on the disk of the computer running TL Studio, which may not be the one your "
    "browser runs on. System folders are never read; when TL Studio answers other computers, "
    "only folders under its user's home folder or in its workspace are."
)


def workspace() -> Workspace:
    return Workspace.from_env()


@st.cache_resource(show_spinner=False)
def _registry(runs_root: str, feature_cache: str, queue_file: str) -> JobScheduler:
    # One scheduler per workspace for the whole process: every session and reload sees it.
    # Head-only runs share the feature cache with the backbone advisor.
    return JobScheduler(Path(runs_root), Path(feature_cache), Path(queue_file))


def registry() -> JobScheduler:
    """The scheduler that runs every heavy job of this workspace, one at a time."""
    ws = workspace()
    return _registry(str(ws.runs), str(ws.feature_cache), str(ws.root / QUEUE_FILE))


def current_job() -> TrainingJob | None:
    """This session's job; a fresh session attaches to the active (or else latest) job.

    A browser reload starts a fresh session: it also takes the job's dataset and settings,
    so every page carries on where the user was.
    """
    jobs = registry()
    job = jobs.get(st.session_state.get(JOB_KEY))
    if job is None:
        job = jobs.active(TRAINING_KINDS) or jobs.latest(TRAINING_KINDS)
        if job is not None:
            st.session_state[JOB_KEY] = job.job_id
            st.session_state.setdefault(DATASET_KEY, job.config.data)
            st.session_state.setdefault(CONFIG_KEY, settings_of(job.config))
    return job


# ----------------------------------------------------------------------------- settings
# The dataset has one owner, DATASET_KEY (set on the Data page). CONFIG_KEY holds the Model
# page's settings without it, so a dataset chosen after the settings is never overridden.


def settings_of(config: TrainConfig) -> dict:
    """A config's settings as the session keeps them: everything but the dataset."""
    return {key: value for key, value in config.to_dict().items() if key != "data"}


def save_settings(config: TrainConfig) -> None:
    st.session_state[CONFIG_KEY] = settings_of(config)


# The Model page's widgets keep their own state under keys with these prefixes.
MODEL_WIDGET_PREFIXES = ("model_", "settings_")


def adopt_settings(**changes) -> None:
    """Changes the session's saved settings as if picked on the Model page.

    Call it from a button's callback, which runs before any widget is drawn. The Model page's
    widgets remember what they showed; their state is dropped so that they start again from
    the saved settings (their single source of truth), rather than writing old values back.
    """
    st.session_state[CONFIG_KEY] = {**(st.session_state.get(CONFIG_KEY) or {}), **changes}
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(MODEL_WIDGET_PREFIXES):
            del st.session_state[key]


def has_settings() -> bool:
    return bool(st.session_state.get(CONFIG_KEY))


def train_config(dataset: str) -> TrainConfig:
    """The saved settings (or the defaults) applied to ``dataset``.

    Raises:
        TLStudioError: The saved settings are no longer valid.
    """
    return TrainConfig.from_dict({**(st.session_state.get(CONFIG_KEY) or {}), "data": dataset})


def show_error(error: TLStudioError) -> None:
    """A user-facing error: what went wrong, then what to try (names in it shown as typed)."""
    st.error(escape_markdown(error.message), icon=":material/error:")
    if error.hint:
        st.info(escape_markdown(error.hint), icon=":material/lightbulb:")


def show_unexpected(error: Exception) -> None:
    """A bug or an unforeseen failure: plain words in the browser, the traceback in the log."""
    logger.exception("Unexpected error on a page")
    os_error = os_error_in(error)
    if os_error is not None:  # a full disk or a read-only folder: say so, as the CLI does
        message, hint = explain_os_error(os_error)
        st.error(escape_markdown(message), icon=":material/error:")
        st.info(
            f"{escape_markdown(hint)} Your data and trained runs are safe on disk.",
            icon=":material/lightbulb:",
        )
        return
    st.error(
        f"Something went wrong on this page: {type(error).__name__}: {escape_markdown(error)}",
        icon=":material/error:",
    )
    st.info(
        "Your data and trained runs are safe on disk. Reload the page to try again; the "
        "terminal running TL Studio shows the details.",
        icon=":material/lightbulb:",
    )


@contextlib.contextmanager
def safety_net() -> Iterator[None]:
    """Shows an error raised inside as a sentence, never as a traceback.

    ``st.rerun`` and ``st.stop`` are not Exceptions, so they pass through.
    """
    try:
        yield
    except TLStudioError as error:
        show_error(error)
    except Exception as error:
        show_unexpected(error)


def fragment(run_every: float | None = None) -> Callable[[Drawing], Drawing]:
    """``st.fragment`` behind the app's safety net.

    Streamlit catches an exception raised in a fragment itself (in a full run as in the
    fragment's own reruns) and shows it with its traceback, so ``app.py``'s safety net never
    sees it. Every fragment of the app is made with this decorator.
    """

    def decorate(func: Drawing) -> Drawing:
        @functools.wraps(func)  # the fragment's identity comes from the function's name
        def guarded(*args, **kwargs) -> None:
            with safety_net():
                func(*args, **kwargs)

        return st.fragment(guarded, run_every=run_every)

    return decorate


def clean_uploads_once() -> None:
    """Deletes uploads no session needs any more (a day old), once as a session starts."""
    if not st.session_state.get(CLEANED_KEY):
        st.session_state[CLEANED_KEY] = True
        workspace().clean_uploads()


def file_uploader(label: str, limit_mb: int, help: str | None = None, **kwargs):
    """``st.file_uploader`` with a size limit per file, said in its help text."""
    limit = f"Up to {format_size(limit_mb << 20)} per file."
    return st.file_uploader(
        label, help=f"{help} {limit}" if help else limit, max_upload_size=limit_mb, **kwargs
    )


def folder_input(placeholder: str) -> str:
    """A text field for a folder on the server's disk (see ``folder_from_form``)."""
    return st.text_input(FOLDER_LABEL, placeholder=placeholder, help=FOLDER_HELP)


def empty_state(message: str, page: str, label: str) -> None:
    st.info(message, icon=":material/info:")
    st.page_link(page, label=label, icon=":material/arrow_forward:")


# ----------------------------------------------------------------------------- sidebar


@st.cache_data(ttl=5, show_spinner=False)
def _device_info() -> dict:
    return describe_devices()


def _job_status(job: TrainingJob) -> None:
    snap = job.snapshot()
    if snap.is_queued:
        st.markdown(_queue.queued_line(snap))
        st.empty()
        return
    accuracy = f" · best {snap.best_accuracy_text}" if snap.best_accuracy_text else ""
    queue = f" · {snap.queue_position.lower()}" if snap.is_active and snap.queue_position else ""
    st.markdown(
        f"**Job** {escape_markdown(snap.name)} · {snap.status}{escape_markdown(queue)} · "
        f"epochs done {snap.epochs_done}{accuracy}"
    )
    # Always two elements, so a redraw replaces both rather than leaving a stale bar.
    if snap.is_active:
        st.progress(snap.progress, text=escape_markdown(snap.message))
    else:
        st.empty()


class SidebarSlots(NamedTuple):
    """Placeholders for the sidebar lines that a page run can change."""

    job: DeltaGenerator
    dataset: DeltaGenerator
    run: DeltaGenerator


def _sidebar_lines(slots: SidebarSlots, live: bool) -> None:
    """The session's job, dataset and run, each replacing what its slot held."""
    job = current_job()
    if job is None:
        slots.job.empty()
    elif live and (job.is_active or job.is_queued):
        with slots.job:  # refresh the status on every page while the job runs
            fragment(run_every=2.0)(_job_status)(job)
    else:
        with slots.job.container():
            _job_status(job)
    for slot, label, key in ((slots.dataset, "Dataset", DATASET_KEY), (slots.run, "Run", RUN_KEY)):
        if path := st.session_state.get(key):
            slot.caption(f"{label}: {escape_markdown(Path(path).name)}")
        else:
            slot.empty()


def render_sidebar() -> SidebarSlots:
    """Device, job and current dataset/run, on every page, drawn before the page runs.

    Returns:
        The slots of the job and run lines: hand them to ``refresh_sidebar`` once the page
        has run. Should the page end in ``st.stop()``, these lines stay as drawn here.
    """
    with st.sidebar:
        info = _device_info()
        if info["cuda"]:
            st.markdown(
                f":material/memory: **{info['name']}** · {info['free_memory_gb']:.1f} of "
                f"{info['total_memory_gb']:.1f} GB free"
            )
        else:
            st.markdown(":material/memory: **CPU** (no GPU found)")
        slots = SidebarSlots(st.empty(), st.empty(), st.empty())
        _queue.interrupted_notices()
    _sidebar_lines(slots, live=False)
    return slots


def refresh_sidebar(slots: SidebarSlots) -> None:
    """Redraws the job and run lines after the page ran, so a job it started or a run it
    picked shows at once rather than after the next rerun."""
    _sidebar_lines(slots, live=True)


# ----------------------------------------------------------------------------- runs


def pick_run(label: str = "Run") -> RunSummary | None:
    """A picker over the runs on disk that have weights, newest first, with the run's note
    beside it (None if no run has weights).

    Starts on the session's current run (the one just trained, or picked before), else on
    the most accurate completed run, else on the newest; the choice becomes the current run.
    """
    # Runs inside sweeps and transfer checks open here too; their titles tell them apart.
    runs = [run for run in list_runs(workspace().runs, in_groups=True) if run.has_weights]
    start = preferred_run(runs, st.session_state.get(RUN_KEY))
    if start is None:
        return None
    by_path = {str(run.path): run for run in runs}
    paths = list(by_path)
    picker_col, note_col = st.columns([4, 1], vertical_alignment="bottom")
    choice = picker_col.selectbox(
        label,
        paths,
        index=paths.index(str(start.path)),
        format_func=lambda p: by_path[p].title,
        help="Backbone · what trained · epochs done/planned · best validation accuracy "
        "(95 % interval, validation images) · started · your note",
    )
    st.session_state[RUN_KEY] = choice
    with note_col:
        run_note_input(by_path[choice])
    return by_path[choice]


def run_note_input(summary: RunSummary) -> None:
    """A text field that saves the run's note (kept in its folder) when the user presses Enter."""
    key = f"run_note:{summary.path}"
    st.text_input(
        "Note",
        value=summary.note,
        key=key,
        max_chars=MAX_NOTE_LENGTH,
        placeholder="e.g. clean data",
        help="A few words to tell this run apart; saved in the run folder and shown in the "
        "run's title.",
        on_change=lambda: write_note(summary.path, st.session_state[key]),
    )


def require_run() -> RunSummary:
    """The run picker, or (when no run has weights yet) a pointer to Train and a stop."""
    summary = pick_run()
    if summary is None:
        empty_state("No trained run yet: train a model first.", TRAIN_PAGE, "Go to Train")
        st.stop()
    return summary


def forget_on_change(marker: str, scope: str, keys: Sequence[str]) -> None:
    """Forgets ``keys`` in the session when ``scope`` is not what ``marker`` last held.

    Choices that only mean something for one run (a picked confusion cell, say) must not
    carry over to another run, where they would describe cells that do not exist.
    """
    if st.session_state.get(marker) != scope:
        for key in keys:
            st.session_state.pop(key, None)
        st.session_state[marker] = scope


def folder_from_form(archive: UploadedFile | None, folder_text: str) -> Path:
    """The folder a form names: an uploaded .zip, extracted safely into the workspace, or a
    folder typed in ``folder_input``, on the server's disk (``Workspace.readable_folder``
    says which folders it reads).

    Raises:
        TLStudioError: Neither was given, the zip is damaged or unsafe, or the path is not
            a folder the server reads.
    """
    ws = workspace()
    if archive is not None:
        zip_path = ws.save_upload(archive, archive.name)
        try:
            return ws.extract_upload(zip_path)
        finally:
            zip_path.unlink(missing_ok=True)  # the extracted copy is what is kept
    if folder_text.strip():
        return ws.readable_folder(folder_text, st.get_option("server.address"))
    raise TLStudioError("Choose a .zip or type a folder path first.")


# ----------------------------------------------------------------------------- datasets


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
    cols[0].metric("Classes", len(report.class_names))
    cols[1].metric("Images", report.num_images)
    cols[2].metric("Skipped files", len(report.skipped))
    cols[3].metric("Duplicate groups", len(report.duplicates))
    for issue in report.errors:
        st.error(escape_markdown(issue.message), icon=":material/block:")
    for issue in report.warnings:
        st.warning(escape_markdown(issue.message), icon=":material/warning:")
    if report.class_names:
        st.plotly_chart(
            class_counts_figure(report.counts), key="class_counts", config=STATIC_CHART_CONFIG
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
        by_class[item.label].append(item.path)
    for name, paths in by_class.items():
        more = len(paths) - THUMBS_PER_CLASS
        st.markdown(
            f"**{escape_markdown(name)}** · {plural(len(paths), 'image')}"
            + (f" ({more:,} more not shown)" if more > 0 else "")
        )
        image_grid(paths[:THUMBS_PER_CLASS])
