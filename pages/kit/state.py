"""Session state that outlives reruns and page switches: remembered widgets, edited tables,
results kept under a signature of their inputs, and the "these results are stale" notice."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import streamlit as st


class Keys:
    """Session-state keys, defined once. Sidebar widgets use them, so choices persist across pages."""

    MODEL = "model_choice"
    CUSTOM_MODEL = "custom_model"
    PROMPT = "prompt"
    COMPARE = "compare"
    COMPARE_MODE = "compare_mode"
    PROMPT_B = "prompt_b"
    MODEL_B = "model_choice_b"
    CUSTOM_MODEL_B = "custom_model_b"
    SHELL_READY = "app_shell_ready"
    DEEP_LINK = "pending_deep_link"
    PAGE = "current_page"
    RESULTS = "kit.results"
    EXPLANATIONS = "kit.explanations"
    FIGURES = "kit.figures"
    AI_EXPLANATIONS = "kit.ai_explanations"
    GROQ_KEY = "ai.groq_key"
    GROQ_MODEL = "ai.groq_model"
    GROQ_MODEL_TYPED = "ai.groq_model_typed"
    GROQ_LEVEL = "ai.level"
    ORIGINS = "kit.origins"
    PAGE_KEYS = "kit.page_keys"
    SAVED_RUNS = "kit.saved_runs"


def remembered(widget, label: str, key: str, default, **kwargs):
    """A widget whose value outlives page switches: Streamlit drops a widget's state when its
    page is not shown, so the value is also kept under `key` and the widget uses `key.widget`."""
    from pages.kit.links import link_value, show_notices  # both build on this module
    from pages.kit.runs import register_page_key

    widget_key = key + ".widget"
    register_page_key(key, widget)
    found, linked = link_value(key, default, kwargs.get("options"), kwargs.get("min_value"),
                               kwargs.get("max_value"))
    if found:
        st.session_state[key] = st.session_state[widget_key] = linked
    show_notices()
    st.session_state.setdefault(key, default)
    st.session_state.setdefault(widget_key, st.session_state[key])
    options = kwargs.get("options")
    if options is not None:  # options can change (an edited list, a shorter prompt)
        fallback = default if default in options or isinstance(default, list) else options[0]
        for stored_key in (key, widget_key):
            stored = st.session_state[stored_key]
            if isinstance(stored, list):
                st.session_state[stored_key] = [v for v in stored if v in options]
            elif stored not in options:
                st.session_state[stored_key] = fallback
    value = widget(label, key=widget_key, **kwargs)
    st.session_state[key] = value
    return value


def set_remembered(key: str, value) -> None:
    """Change a remembered widget's value from a callback (both the value and the widget)."""
    st.session_state[key] = st.session_state[key + ".widget"] = value


def forget(key: str) -> None:
    """Drop a remembered widget's value, so it starts again from its default."""
    for stored_key in (key, key + ".widget"):
        st.session_state.pop(stored_key, None)


def apply_table_edits(key: str, editor_key: str) -> None:
    """Fold the editor's changes into the stored table, then start a fresh editor on it (a new
    key), so no change is applied twice and edits survive page switches."""
    edits = st.session_state[editor_key]
    table = st.session_state[key].copy()
    for row, changes in edits.get("edited_rows", {}).items():
        for column, value in changes.items():
            table.iloc[int(row), table.columns.get_loc(column)] = value
    table = table.drop(index=table.index[list(edits.get("deleted_rows", []))])
    added = pd.DataFrame(edits.get("added_rows", []), columns=table.columns)
    st.session_state[key] = pd.concat([table, added], ignore_index=True).fillna("")
    st.session_state[key + ".version"] += 1


def edited_table(key: str, default: pd.DataFrame, **editor_options) -> pd.DataFrame:
    """An `st.data_editor` on a table kept in session state under `key`; returns the table with
    every edit so far, which survives reruns and page switches."""
    st.session_state.setdefault(key, default)
    st.session_state.setdefault(key + ".version", 0)
    editor_key = f"{key}.editor.{st.session_state[key + '.version']}"
    st.data_editor(st.session_state[key], key=editor_key, on_change=apply_table_edits,
                   args=(key, editor_key), **editor_options)
    return st.session_state[key]


def last_result(key: str):
    """The result kept under `key` in this session, or None."""
    stored = st.session_state.get(Keys.RESULTS, {}).get(key)
    return None if stored is None else stored[1]


def run_and_remember(key: str, signature, fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)`, kept in this session under `key` with the `signature` of its inputs
    (model name, prompt, options): while the signature is unchanged, reruns return the kept
    result and never recompute. Errors propagate and keep nothing."""
    results = st.session_state.setdefault(Keys.RESULTS, {})
    stored = results.get(key)
    if stored is not None and stored[0] == signature:
        return stored[1]
    from pages.kit.runs import note_origin, session_origins  # runs builds on this module

    started = time.perf_counter()
    result = fn(*args, **kwargs)
    results[key] = (signature, result)
    note_origin(session_origins(), result, fn, args, kwargs, time.perf_counter() - started)
    return result


def drop_result(key: str) -> None:
    """Forget the result kept under `key` (e.g. one made for another task)."""
    st.session_state.get(Keys.RESULTS, {}).pop(key, None)


def is_stale(key: str, signature) -> bool:
    stored = st.session_state.get(Keys.RESULTS, {}).get(key)
    return stored is not None and stored[0] != signature


def stale_notice(key: str, signature, action: str) -> None:
    """Say when the kept result was computed from other inputs than the ones shown now."""
    if is_stale(key, signature):
        st.info(f"These results are from an earlier run; the inputs have changed since. Press "
                f"{action} to update them.")


def cached_across_sessions(fn: Callable, max_entries: int = 64, ttl: str = "1h") -> Callable:
    """`fn` shared by every session (`st.cache_data`, bounded): for pure functions of small,
    cheap-to-hash arguments (model names, prompts, options; never a model object)."""
    return st.cache_data(max_entries=max_entries, ttl=ttl, show_spinner=False)(fn)
