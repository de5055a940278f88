"""Showing a result: its registered figure and caption, its exports (built only when clicked),
its explanation (computed once per result), and progress while it is computed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import streamlit as st

from interp import explain as explaining
from interp import export
from interp.figures import CaptionedFigure, figure_for
from pages.kit.state import Keys

Progress = Callable[[float, str], None]


@contextlib.contextmanager
def progress_reporter(label: str = "Starting ...", status: bool = False) -> Iterator[Progress]:
    """A plain `progress(fraction, text)` callback for `interp`, drawn as an `st.progress` bar
    (inside an `st.status` box when `status`) that disappears when the work ends."""
    box = st.status(label, expanded=True) if status else contextlib.nullcontext()
    with box:
        bar = st.progress(0.0, text=label)

        def report(fraction: float, text: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)

        try:
            yield report
        finally:
            bar.empty()
    if status:
        box.update(state="complete", expanded=False)


def show(result, key: str, **options) -> CaptionedFigure:
    """Draw `result` with the figure and caption registered for its type (`options` go to the
    figure, e.g. a position); returns them for `export_buttons`."""
    shown = figure_for(result, **options)
    st.plotly_chart(shown.figure, key=f"{key}.chart")
    st.caption(shown.caption)
    return shown


def export_buttons(result, shown: CaptionedFigure | None, key: str, name: str | None = None,
                   json_extra: Mapping | None = None, csv_options: Mapping | None = None) -> None:
    """One Export menu: JSON, CSV where the result is tabular, Plotly HTML where it has a figure.
    Each file is built only when its button is clicked (Streamlit calls `data` then)."""
    name = name or (shown.name if shown is not None else type(result).__name__.lower())
    json_extra, csv_options = dict(json_extra or {}), dict(csv_options or {})
    with st.popover("Export", icon=":material/download:"):
        st.download_button("JSON", data=lambda: export.to_json(result, **json_extra),
                           file_name=f"{name}.json", mime="application/json", key=f"{key}.json",
                           on_click="ignore")
        if export.has_csv(result):
            st.download_button("CSV", data=lambda: export.to_csv(result, **csv_options),
                               file_name=f"{name}.csv", mime="text/csv", key=f"{key}.csv",
                               on_click="ignore")
        if shown is not None:
            st.download_button("Plotly HTML", data=lambda: export.figure_to_html(shown.figure),
                               file_name=f"{name}.html", mime="text/html", key=f"{key}.html",
                               on_click="ignore")


def explanation_of(result, key: str, **context) -> explaining.Explanation:
    """`explain(result, **context)`, computed once per result: kept in this session with the
    very objects it was made from, so reruns reuse it and a new result gets a new one."""
    held = st.session_state.setdefault(Keys.EXPLANATIONS, {})
    made_from = (result, *context.values())
    stored = held.get(key)
    if stored is None or len(stored[0]) != len(made_from) or any(
            old is not new for old, new in zip(stored[0], made_from, strict=True)):
        stored = held[key] = (made_from, explaining.explain(result, **context))
    return stored[1]


def explain_panel(result, key: str, expanded: bool = False, **context) -> None:
    """An "Explain" expander with the result's explanation (offline template, or a model-written
    one once a backend is plugged into `interp.explain`)."""
    explanation = explanation_of(result, key, **context)
    with st.expander("Explain", expanded=expanded):
        st.markdown(explanation.markdown)
