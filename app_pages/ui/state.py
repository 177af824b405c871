"""What a session keeps and where: session keys, the pages' paths, the workspace, the
process-wide job scheduler, this session's job, and the Model page's saved settings.

``st.session_state`` holds only ids and paths (dataset, config dict, job id, run), so a browser
reload or a page switch re-attaches to the same data, job and run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from tl_core.common import TLStudioError
from tl_core.config import TrainConfig
from tl_core.jobs import QUEUE_FILE, TRAINING_KINDS, Job, JobScheduler, JobSnapshot, TrainingJob
from tl_core.runs import (
    CONFIG_FILE,
    Workspace,
)

DATASET_KEY = "dataset_path"
CONFIG_KEY = "train_config"
JOB_KEY = "job_id"
RUN_KEY = "run_path"
VANISHED_RUN_KEY = "vanished_run_path"  # the session's run, deleted in another tab or on disk
CLEANED_KEY = "uploads_cleaned"
ATTACHED_KEY = "attached_to_work"  # set once a fresh session has taken up the work under way
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
FAVICON = Path(__file__).resolve().parents[2] / "assets" / "favicon.svg"


def workspace() -> Workspace:
    return Workspace.from_env()


@st.cache_resource(show_spinner=False)
def _scheduler(runs_root: str, feature_cache: str, queue_file: str) -> JobScheduler:
    # One scheduler per workspace for the whole process: every session and reload sees it.
    # Head-only runs share the feature cache with the backbone advisor.
    return JobScheduler(Path(runs_root), Path(feature_cache), Path(queue_file))


def scheduler() -> JobScheduler:
    """The scheduler that runs every heavy job of this workspace, one at a time."""
    ws = workspace()
    return _scheduler(str(ws.runs), str(ws.feature_cache), str(ws.root / QUEUE_FILE))


# The jobs' states as this script run read them: {job id: snapshot, LINE: the line's snapshots}.
SNAPSHOTS_KEY = "script_run_snapshots"
_LINE = "line"


def new_script_run() -> None:
    """Forgets the job states the last script run read; app.py calls it as each run starts."""
    st.session_state.pop(SNAPSHOTS_KEY, None)


def _read_this_run() -> dict | None:
    """This script run's snapshots, or None in a fragment's own rerun (which reads afresh:
    it redraws only itself, and app.py did not start it)."""
    ctx = get_script_run_ctx()
    if ctx is not None and ctx.fragment_ids_this_run:
        return None
    return st.session_state.setdefault(SNAPSHOTS_KEY, {})


def job_snapshot(job: Job) -> JobSnapshot:
    """The job's state as this script run shows it, read once per run.

    A job may end between two reads; the page's status line and buttons, the Start note and
    the sidebar all take the job's state from here, so they cannot disagree about it.
    """
    read = _read_this_run()
    if read is None:
        return job.snapshot()
    if job.job_id not in read:
        read[job.job_id] = job.snapshot()
    return read[job.job_id]


def line_snapshots() -> list[JobSnapshot]:
    """The jobs still running or waiting, in line order, as this script run shows them."""
    read = _read_this_run()
    if read is not None and _LINE in read:
        return read[_LINE]
    snaps = [job_snapshot(job) for job in scheduler().line()]
    line = [snap for snap in snaps if snap.is_active or snap.is_queued]  # not one just ended
    if read is not None:
        read[_LINE] = line
    return line


def current_job() -> TrainingJob | None:
    """This session's job; a fresh session attaches to the active (or else latest) job.

    A browser reload starts a fresh session: it takes up the work under way (``take_up_work``)
    and the training job's settings, so every page carries on where the user was.
    """
    jobs = scheduler()
    take_up_work(jobs)
    job = jobs.get(st.session_state.get(JOB_KEY))
    if job is None:
        job = jobs.active(TRAINING_KINDS) or jobs.latest(TRAINING_KINDS)
        if job is not None:
            st.session_state[JOB_KEY] = job.job_id
            st.session_state.setdefault(DATASET_KEY, job.config.data)
            st.session_state.setdefault(CONFIG_KEY, settings_of(job.config))
    return job


def take_up_work(jobs: JobScheduler) -> None:
    """Once per session: the dataset (and settings) of the newest job still waiting or
    running, of any kind, else of the newest job. A reload during a backbone comparison or
    the learning-rate finder (running, or waiting behind another session's training) comes
    back on the dataset being compared, where the page finds that job by its dataset, not on
    the dataset of the latest training."""
    if st.session_state.get(ATTACHED_KEY):
        return
    st.session_state[ATTACHED_KEY] = True
    line = jobs.line()  # the running job, then the waiting ones in the order they came
    work = line[-1] if line else jobs.latest()
    if work is None or not Path(work.dataset).exists():
        return
    st.session_state.setdefault(DATASET_KEY, work.dataset)
    if (config := getattr(work, "config", None)) is not None:
        st.session_state.setdefault(CONFIG_KEY, settings_of(config))


def run_exists(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def vanished_run(path: str | Path) -> TLStudioError:
    """What to say about the session's run once its folder has gone."""
    return TLStudioError(
        f"The run {Path(path).name} was deleted (in another tab or on disk); pick another run.",
        "Every run still on disk is in the picker.",
    )


def current_run() -> str | None:
    """The session's run, if its folder is still on disk.

    A run deleted meanwhile (in another tab, or on disk) is dropped and kept under
    ``VANISHED_RUN_KEY``, so that the pages say what happened rather than silently showing
    another run; ``choose_run`` clears it.
    """
    path = st.session_state.get(RUN_KEY)
    if path and not run_exists(path):
        st.session_state[VANISHED_RUN_KEY] = path
        del st.session_state[RUN_KEY]
        return None
    return path


def choose_run(path: str | Path) -> None:
    """Makes ``path`` the session's run."""
    st.session_state[RUN_KEY] = str(path)
    st.session_state.pop(VANISHED_RUN_KEY, None)


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


def clean_uploads_once() -> None:
    """Deletes uploads no session needs any more (a day old), once as a session starts."""
    if not st.session_state.get(CLEANED_KEY):
        st.session_state[CLEANED_KEY] = True
        workspace().clean_uploads()


def forget_on_change(marker: str, scope: str, keys: Sequence[str]) -> None:
    """Forgets ``keys`` in the session when ``scope`` is not what ``marker`` last held.

    Choices that only mean something for one run (a picked confusion cell, say) must not
    carry over to another run, where they would describe cells that do not exist.
    """
    if st.session_state.get(marker) != scope:
        for key in keys:
            st.session_state.pop(key, None)
        st.session_state[marker] = scope
