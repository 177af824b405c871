"""The page's address names the session's dataset and run, so a reload brings back the user's own.

Every script run writes ``?dataset=<path>&run=<path>`` from the session (app.py calls
``write_address`` each run, since moving between pages clears the address's parameters). A
browser reload starts a fresh session with nothing in it: ``restore_from_address`` reads the
parameters back before any page or the sidebar guesses from the job queue, which another
person's newer job would lead astray. A value typed into the address is a path like any other:
it must still exist and lie where the app may read (``Workspace.readable_folder``'s rule, the
sample dataset, the workspace's runs), or the page says in words why it was not taken up.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.ui import state
from tl_core.common import TLStudioError
from tl_core.data import SAMPLE_DATASET_DIR
from tl_core.jobs import TRAINING_KINDS

DATASET_PARAM = "dataset"
RUN_PARAM = "run"
READ_KEY = "address_read"  # set once a fresh session has read its address
# Where each parameter comes from in the session.
_SESSION_KEYS = {DATASET_PARAM: state.DATASET_KEY, RUN_PARAM: state.RUN_KEY}


def restore_from_address() -> TLStudioError | None:
    """Once per session, before anything guesses: takes up the dataset and run the address names.

    A dataset named there also brings back the settings of its newest job (one still waiting or
    running first), so the Model page's comparison or learning-rate finder finds that job again
    by its dataset and settings; the queue's guess (``state.take_up_work``) is then skipped.

    Returns:
        What was refused, in words, or None when everything named was taken up.
    """
    if st.session_state.get(READ_KEY):
        return None
    st.session_state[READ_KEY] = True
    refused = None
    if dataset := st.query_params.get(DATASET_PARAM):
        try:
            _check_dataset(dataset)
            _take_up_dataset(dataset)
        except TLStudioError as error:
            refused = error
    if run := st.query_params.get(RUN_PARAM):
        try:
            _check_run(run)
            state.choose_run(run)
        except TLStudioError as error:
            refused = refused or error
    return refused


def write_address() -> None:
    """Names the session's dataset and run in the address (only what changed is sent)."""
    for param, key in _SESSION_KEYS.items():
        value = st.session_state.get(key)
        if value and st.query_params.get(param) != str(value):
            st.query_params[param] = str(value)
        elif not value and param in st.query_params:
            del st.query_params[param]


def _check_dataset(text: str) -> None:
    path = Path(text)
    if not path.is_absolute() or not path.is_dir():
        raise TLStudioError(
            f"The dataset {text} named in this page's address no longer exists; "
            "pick a dataset on the Data page.",
            "It was deleted or moved. The datasets of the workspace are listed there.",
        )
    if path.resolve().is_relative_to(SAMPLE_DATASET_DIR.resolve()):
        return
    try:
        state.workspace().readable_folder(text, st.get_option("server.address"))
    except TLStudioError as error:
        raise TLStudioError(
            f"The dataset {text} named in this page's address is not opened: {error.message}",
            "Pick a dataset on the Data page.",
        ) from error


def _check_run(text: str) -> None:
    path = Path(text)
    runs = state.workspace().runs.resolve()
    if not path.is_absolute() or not path.resolve().is_relative_to(runs):
        raise TLStudioError(
            f"The run {text} named in this page's address is not a run of this workspace; "
            "it was not opened.",
            f"Runs live in {runs}; pick one in the run picker.",
        )
    if not state.run_exists(path):
        raise TLStudioError(
            f"The run {path.name} named in this page's address no longer exists; pick another run.",
            "Every run still on disk is in the picker.",
        )


def _take_up_dataset(dataset: str) -> None:
    jobs = state.scheduler()
    mine = [job for job in jobs.line() if job.dataset == dataset]
    work = mine[-1] if mine else jobs.latest(dataset=dataset)
    st.session_state[state.DATASET_KEY] = dataset
    st.session_state[state.ATTACHED_KEY] = True  # the queue's guess is not needed
    if (training := jobs.latest(TRAINING_KINDS, dataset=dataset)) is not None:
        st.session_state.setdefault(state.JOB_KEY, training.job_id)
    if work is not None and (config := getattr(work, "config", None)) is not None:
        st.session_state.setdefault(state.CONFIG_KEY, state.settings_of(config))
