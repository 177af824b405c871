"""The Train page's summary of a finished run, class by class."""

from __future__ import annotations

import streamlit as st

from tl_core.common import TLStudioError, escape_markdown
from tl_core.inference import class_summary


def class_recall(run: str) -> None:
    """Each class's recall on the validation images: an imbalanced dataset can score well
    overall while the model misses most of a small class."""
    try:
        table = class_summary(run)
    except TLStudioError:
        return  # the Evaluate page says what is wrong with the run in full
    if table is None or table.empty:
        return
    st.markdown("**Per class**, best epoch on the validation images")
    weighted = "loss weight" in table
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            name: st.column_config.NumberColumn(format="percent")
            for name in ("recall", "precision")
        }
        | {"loss weight": st.column_config.NumberColumn(format="%.2f")},
        key=f"class_recall:{run}",
    )
    worst = table.loc[table.recall.idxmin()]
    text = (
        f"Lowest recall: {escape_markdown(str(worst['class']))}, "
        f"{worst.recall:.0%} of its validation images found."
    )
    if weighted:
        text += " The loss was weighted by class, so small classes counted as much as big ones."
    st.caption(text)
