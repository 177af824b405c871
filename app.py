"""TL Studio: the browser app. Registers the pages in journey order and draws the shared sidebar.

Run with ``streamlit run app.py`` (or ``make run``). The pages live in ``app_pages/``, not
``pages/``: Streamlit treats a ``pages/`` folder as the old file-based navigation and, for the
first session after a start, would run a deep-linked page without this frame.
"""

import streamlit as st

from app_pages.ui import address, feedback, state
from app_pages.ui import sidebar as ui_sidebar
from tl_core.common import setup_logging

# The server's terminal is its log: one line per warning, the traceback of an error.
setup_logging(error_tracebacks=True)
st.set_page_config(page_title="TL Studio", page_icon=state.FAVICON, layout="wide")

navigation = st.navigation(
    [
        st.Page(state.DATA_PAGE, title="Data", icon=":material/photo_library:", default=True),
        st.Page(state.MODEL_PAGE, title="Model", icon=":material/account_tree:"),
        st.Page(state.TRAIN_PAGE, title="Train", icon=":material/model_training:"),
        st.Page(state.EVALUATE_PAGE, title="Evaluate", icon=":material/analytics:"),
        st.Page(state.COMPARE_PAGE, title="Compare", icon=":material/compare_arrows:"),
        st.Page(state.PREDICT_PAGE, title="Predict", icon=":material/image_search:"),
        st.Page(state.EXPORT_PAGE, title="Export", icon=":material/download:"),
        st.Page(state.WORKSPACE_PAGE, title="Workspace", icon=":material/hard_drive:"),
    ]
)
# The last safety net: an error the page did not expect is a sentence, never a traceback
# (fragments have their own, feedback.fragment; .streamlit/config.toml hides any that slips by).
with feedback.safety_net():
    state.new_script_run()  # the jobs' states are read afresh, once, for this run
    state.clean_uploads_once()
    # A reload comes back on the dataset and run this page's address names, before any guess.
    if (refused := address.restore_from_address()) is not None:
        feedback.show_error(refused)
    address.write_address()  # moving to another page cleared the address's parameters
    # The sidebar's job and run lines are drawn again after the page, which may have started
    # a job or picked a run.
    sidebar = ui_sidebar.render_sidebar()
    navigation.run()
    ui_sidebar.refresh_sidebar(sidebar)
    address.write_address()  # the page may have chosen another dataset or run
