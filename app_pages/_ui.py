"""What the pages share: session keys, the workspace, the job registry, the sidebar, widgets.

``app.py`` registers pages explicitly with ``st.navigation``, so this module is never shown
as a page. ``st.session_state`` holds only ids and paths (dataset, config dict, job id, run),
so a browser reload or a page switch re-attaches to the same data, job and run.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from PIL import ImageOps

from tl_core.config import TrainConfig
from tl_core.datasets import DatasetReport, scan_dataset
from tl_core.devices import describe_devices
from tl_core.errors import TLStudioError
from tl_core.figures import class_counts_figure
from tl_core.images import load_image
from tl_core.jobs import JobRegistry, TrainingJob
from tl_core.runs import RunSummary, list_runs
from tl_core.workspace import Workspace, folder_signature

DATASET_KEY = "dataset_path"
CONFIG_KEY = "train_config"
JOB_KEY = "job_id"
RUN_KEY = "run_path"

DATA_PAGE = "app_pages/data.py"
MODEL_PAGE = "app_pages/model.py"
TRAIN_PAGE = "app_pages/train.py"
EVALUATE_PAGE = "app_pages/evaluate.py"
PREDICT_PAGE = "app_pages/predict.py"
EXPORT_PAGE = "app_pages/export.py"

logger = logging.getLogger("tl_studio.app")

THUMB_SIZE = 96
THUMBS_PER_CLASS = 8


def workspace() -> Workspace:
    return Workspace.from_env()


@st.cache_resource(show_spinner=False)
def _registry(runs_root: str) -> JobRegistry:
    # One registry per runs folder for the whole process: every session and reload sees it.
    return JobRegistry(Path(runs_root))


def registry() -> JobRegistry:
    return _registry(str(workspace().runs))


def current_job() -> TrainingJob | None:
    """This session's job; a fresh session attaches to the active (or else latest) job.

    A browser reload starts a fresh session: it also takes the job's dataset and settings,
    so every page carries on where the user was.
    """
    jobs = registry()
    job = jobs.get(st.session_state.get(JOB_KEY))
    if job is None:
        job = jobs.active() or jobs.latest()
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


def has_settings() -> bool:
    return bool(st.session_state.get(CONFIG_KEY))


def train_config(dataset: str) -> TrainConfig:
    """The saved settings (or the defaults) applied to ``dataset``.

    Raises:
        TLStudioError: The saved settings are no longer valid.
    """
    return TrainConfig.from_dict({**(st.session_state.get(CONFIG_KEY) or {}), "data": dataset})


def show_error(error: TLStudioError) -> None:
    """A user-facing error: what went wrong, then what to try."""
    st.error(error.message, icon=":material/error:")
    if error.hint:
        st.info(error.hint, icon=":material/lightbulb:")


def show_unexpected(error: Exception) -> None:
    """A bug or an unforeseen failure: plain words in the browser, the traceback in the log."""
    logger.exception("Unexpected error on a page")
    st.error(
        f"Something went wrong on this page: {type(error).__name__}: {error}",
        icon=":material/error:",
    )
    st.info(
        "Your data and trained runs are safe on disk. Reload the page to try again; the "
        "terminal running TL Studio shows the details.",
        icon=":material/lightbulb:",
    )


def empty_state(message: str, page: str, label: str) -> None:
    st.info(message, icon=":material/info:")
    st.page_link(page, label=label, icon=":material/arrow_forward:")


# ----------------------------------------------------------------------------- sidebar


@st.cache_data(ttl=5, show_spinner=False)
def _device_info() -> dict:
    return describe_devices()


def _job_status(job: TrainingJob) -> None:
    snap = job.snapshot()
    accuracy = "" if snap.best_val_accuracy is None else f" · best {snap.best_val_accuracy:.1%}"
    st.markdown(f"**Job** {snap.status} · epoch {snap.epoch}/{snap.total_epochs}{accuracy}")
    if snap.is_active:
        st.progress(snap.progress, text=snap.message)


def render_sidebar() -> None:
    """Device, active job and current dataset/run, on every page."""
    with st.sidebar:
        info = _device_info()
        if info["cuda"]:
            st.markdown(
                f":material/memory: **{info['name']}** · {info['free_memory_gb']:.1f} of "
                f"{info['total_memory_gb']:.1f} GB free"
            )
        else:
            st.markdown(":material/memory: **CPU** (no GPU found)")
        job = current_job()
        if job is not None:
            if job.is_active:
                # Refresh the status on every page while the job runs.
                st.fragment(run_every=2.0)(_job_status)(job)
            else:
                _job_status(job)
        if dataset := st.session_state.get(DATASET_KEY):
            st.caption(f"Dataset: {Path(dataset).name}")
        if run := st.session_state.get(RUN_KEY):
            st.caption(f"Run: {Path(run).name}")


# ----------------------------------------------------------------------------- runs


def pick_run(label: str = "Run") -> RunSummary | None:
    """A picker over the runs on disk that have weights, newest first (None if there are none).

    Defaults to the session's current run, and makes the choice the current run.
    """
    runs = [run for run in list_runs(workspace().runs) if run.has_weights]
    if not runs:
        return None
    by_path = {str(run.path): run for run in runs}
    paths = list(by_path)
    current = st.session_state.get(RUN_KEY)
    choice = st.selectbox(
        label,
        paths,
        index=paths.index(current) if current in by_path else 0,
        format_func=lambda p: f"{by_path[p].title} · {by_path[p].backbone}",
    )
    st.session_state[RUN_KEY] = choice
    return by_path[choice]


def require_run() -> RunSummary:
    """The run picker, or (when no run has weights yet) a pointer to Train and a stop."""
    summary = pick_run()
    if summary is None:
        empty_state("No trained run yet: train a model first.", TRAIN_PAGE, "Go to Train")
        st.stop()
    return summary


# ----------------------------------------------------------------------------- datasets


@st.cache_data(max_entries=8, show_spinner="Checking every image...")
def _scan(path: str, signature: tuple) -> DatasetReport:
    del signature  # part of the cache key only: a changed folder is scanned again
    return scan_dataset(path)


def scan(path: str | Path) -> DatasetReport:
    """The health report of a dataset folder, rescanned only when its files change."""
    return _scan(str(path), folder_signature(path))


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
    """Thumbnails in a row that wraps; unreadable files are left out."""
    captions = list(captions) if captions is not None else [Path(p).name for p in paths]
    shown = [
        (thumb, caption)
        for p, caption in zip(paths, captions, strict=True)
        if (thumb := thumbnail(str(p), size)) is not None
    ]
    if shown:
        st.image([t for t, _ in shown], caption=[c for _, c in shown], width=size)


def render_report(report: DatasetReport, thumbnails: bool = True) -> None:
    """The dataset health report: totals, images per class, problems, thumbnails."""
    cols = st.columns(4)
    cols[0].metric("Classes", len(report.class_names))
    cols[1].metric("Images", report.num_images)
    cols[2].metric("Skipped files", len(report.skipped))
    cols[3].metric("Duplicate groups", len(report.duplicates))
    for issue in report.errors:
        st.error(issue.message, icon=":material/block:")
    for issue in report.warnings:
        st.warning(issue.message, icon=":material/warning:")
    if report.class_names:
        st.plotly_chart(class_counts_figure(report.counts), key="class_counts")
    if report.skipped:
        with st.expander(f"Skipped files ({len(report.skipped)})"):
            st.dataframe(
                [{"file": report.relative(s.path), "reason": s.reason} for s in report.skipped],
                hide_index=True,
            )
    if report.duplicates:
        with st.expander(f"Duplicates ({len(report.duplicates)} groups)"):
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
            f"**{name}** · {len(paths)} images" + (f" ({more} more not shown)" if more > 0 else "")
        )
        image_grid(paths[:THUMBS_PER_CLASS])
