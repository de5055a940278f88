"""Showing a result: its registered figure and caption, its exports (built only when clicked),
its explanation (computed once per result), and progress while it is computed."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping

import streamlit as st

from interp import explain as explaining
from interp import export
from interp.errors import InterpError
from interp.figures import CaptionedFigure, CaptionedTable, figure_for
from pages.kit import queue
from pages.kit.ai import ai_panel
from pages.kit.models import show_error
from pages.kit.runs import save_run_button
from pages.kit.state import Keys, last_result, stale_notice

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


def result_on_click(key: str, signature, clicked: bool, action: str, fn: Callable, *args):
    """The page's kept result: computed by `fn(*args, progress=...)` with a progress bar when its
    button was `clicked` (unless kept under the same `signature`), waiting its turn for the
    model in view (`pages.kit.queue`), with a notice when it is from other inputs than the
    current ones; errors are shown, never raised."""
    if clicked or queue.in_flight(key):
        try:
            queue.run_in_turn(key, signature, clicked, fn, *args)
        except InterpError as error:
            show_error(error)
    stale_notice(key, signature, action)
    return last_result(key)


def same_options(old: Mapping, new: Mapping) -> bool:
    """Whether a figure's options are unchanged (an option that can't be compared, such as a
    tensor, counts as changed)."""
    if old.keys() != new.keys():
        return False
    try:
        return all(bool(old[name] == new[name]) for name in new)
    except (TypeError, ValueError, RuntimeError):
        return False


def figure_of(result, key: str, **options) -> CaptionedFigure | CaptionedTable:
    """`figure_for(result, **options)`, built once per result and options: kept in this session
    under `key` with a weak reference to the very result it shows, so a rerun that changes
    nothing reuses it (building a Plotly figure costs more than drawing it) and a new result,
    or other options, gets a new one. Entries whose result is gone are dropped."""
    held = st.session_state.setdefault(Keys.FIGURES, {})
    stored = held.get(key)
    if stored is not None and stored[0]() is result and same_options(stored[1], options):
        return stored[2]
    shown = figure_for(result, **options)
    try:
        reference = weakref.ref(result)
    except TypeError:  # a result without weak references (none so far) is not kept
        return shown
    held[key] = (reference, dict(options), shown)
    for stale in [name for name, (made_from, _, _) in held.items() if made_from() is None]:
        del held[stale]
    return shown


def show(result, key: str, **options) -> CaptionedFigure | CaptionedTable:
    """Draw `result` with the figure (or table) and caption registered for its type (`options`
    go to the builder, e.g. a position); returns them for `export_buttons`. The figure is built
    once per result and options (`figure_of`)."""
    shown = figure_of(result, key, **options)
    if isinstance(shown, CaptionedTable):
        st.dataframe(shown.table, hide_index=True, key=f"{key}.table")
    else:
        st.plotly_chart(shown.figure, key=f"{key}.chart")
    st.caption(shown.caption)
    return shown


def metric_row(values: Mapping[str, str]) -> None:
    """Headline numbers side by side (label -> formatted value)."""
    for column, (label, value) in zip(st.columns(len(values)), values.items(), strict=True):
        column.metric(label, value)


def export_buttons(result, shown: CaptionedFigure | CaptionedTable | None, key: str, name: str | None = None,
                   json_extra: Mapping | None = None, csv_options: Mapping | None = None) -> None:
    """One Export menu: JSON, CSV where the result is tabular, .npz where it registers arrays,
    Plotly HTML where it has a figure, and "Save run" (`pages.kit.runs`).
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
        if export.has_npz(result):
            st.download_button("NumPy .npz", data=lambda: export.to_npz(result),
                               file_name=f"{name}.npz", mime="application/octet-stream",
                               key=f"{key}.npz", on_click="ignore")
        if isinstance(shown, CaptionedFigure):
            st.download_button("Plotly HTML", data=lambda: export.figure_to_html(shown.figure),
                               file_name=f"{name}.html", mime="text/html", key=f"{key}.html",
                               on_click="ignore")
        save_run_button(result, shown.figure if isinstance(shown, CaptionedFigure) else None,
                        key)


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
    """An "Explain" expander with the result's offline explanation, labelled, and with a Groq
    key set an "Explain with Groq" button for an AI one (see `pages.kit.ai`)."""
    explanation = explanation_of(result, key, **context)
    with st.expander("Explain", expanded=expanded):
        ai_panel(result, explanation, key, context)
