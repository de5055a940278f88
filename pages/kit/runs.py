"""Saving what a page shows as a run (`interp.runs`), with no code in the page itself.

The kit notes where each result came from when it computes it (the `interp` call, the model,
how long it took) and which remembered widgets belong to which page; `save_run_button`, drawn
beside every result's exports, turns that, the figure on screen and the explanation already
made into one saved run. The store is shared by every session of the process.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from interp import runs
from interp.caching import secrets
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.settings import Settings
from interp.wandb_logging import log_run, wandb_enabled
from pages.kit.registry import PageEntry, page_in_stack, running_page
from pages.kit.state import Keys

ORIGINS_KEPT = 64  # results whose origin a session remembers (the newest)


@dataclass(frozen=True)
class Origin:
    """How a result was made: the recorded call (None when it can't be re-run), the model it
    ran on (a weak reference: a session must not keep a model the shared cache let go), when,
    and how long it took."""

    call: runs.Call | None
    model: Callable[[], LoadedModel | None]
    seconds: float
    finished_at: float
    inputs: tuple[Callable[[], object], ...] = ()  # the results it was computed from


def weak(value) -> Callable[[], object]:
    try:
        return weakref.ref(value)
    except TypeError:  # an object without weak references is held, as a last resort
        return lambda: value


def note_origin(origins: dict, result, fn: Callable, args: tuple, kwargs: Mapping | None,
                seconds: float) -> None:
    """Remember how `result` (and the results it holds as fields) was made, in a plain dict
    (safe off the script thread). Keyed by identity; entries hold the result weakly, so they
    never keep a result alive that the session has dropped."""
    model = next((a for a in args if isinstance(a, LoadedModel)), None)
    if model is None:
        model = next((a.model for a in args if isinstance(getattr(a, "model", None),
                                                          LoadedModel)), None)
    origin = Origin(runs.describe_call(fn, args, kwargs),
                    weak(model) if model is not None else lambda: None, seconds, time.time(),
                    tuple(weak(a) for a in args if dataclasses.is_dataclass(a)
                          and not isinstance(a, type)))
    origins[id(result)] = (weak(result), origin)
    if dataclasses.is_dataclass(result):  # a run of one part records which part it holds
        for item in dataclasses.fields(result):
            part = getattr(result, item.name)
            if dataclasses.is_dataclass(part) and not isinstance(part, type):
                call = (dataclasses.replace(origin.call, part=item.name)
                        if origin.call is not None else None)
                origins[id(part)] = (weak(part), dataclasses.replace(origin, call=call))
    for key in [key for key, (held, _) in origins.items() if held() is None]:
        del origins[key]
    while len(origins) > ORIGINS_KEPT:
        origins.pop(next(iter(origins)))


def session_origins() -> dict:
    return st.session_state.setdefault(Keys.ORIGINS, {})


def origin_of(result) -> Origin | None:
    held = session_origins().get(id(result))
    return held[1] if held is not None and held[0]() is result else None


FREE_TEXT_WIDGETS = ("text_input", "text_area", "chat_input")


def note_saved(result, content_hash: str) -> None:
    """Remember that `result` was saved as the run with this hash (for the lineage of runs
    later computed from it)."""
    saved = st.session_state.setdefault(Keys.SAVED_RUNS, {})
    saved[id(result)] = (weak(result), content_hash)
    for key in [key for key, (held, _) in saved.items() if held() is None]:
        del saved[key]


def parents_of(origin: Origin | None) -> list[str]:
    """Content hashes of the saved runs whose results this result was computed from."""
    saved = st.session_state.get(Keys.SAVED_RUNS, {})
    found = []
    for ref in origin.inputs if origin is not None else ():
        source = ref()
        held = saved.get(id(source)) if source is not None else None
        if held is not None and held[0]() is source:
            found.append(held[1])
    return found


def register_page_key(key: str, widget) -> None:
    """Note that a remembered widget's value belongs to the page being run (its options), and
    whether it is free text (which, like the prompt, stays out of a link unless asked)."""
    page = page_in_stack()
    if page is not None:
        free_text = getattr(widget, "__name__", "") in FREE_TEXT_WIDGETS
        st.session_state.setdefault(Keys.PAGE_KEYS, {}).setdefault(page.path, {})[key] = free_text


def page_options(page_path: str, free_text: bool = True) -> dict:
    """The page's remembered widget values (what a run and a shared link record); without
    `free_text`, none typed into a text box."""
    keys = st.session_state.get(Keys.PAGE_KEYS, {}).get(page_path, {})
    options = {}
    for key in sorted(keys):
        if keys[key] and not free_text:
            continue
        value = st.session_state.get(key)
        if isinstance(value, (str, int, float, bool)) or value is None:
            options[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool))
                                                      for v in value):
            options[key] = list(value)
    return options


@st.cache_resource(show_spinner=False)
def shared_store(location: str, size_cap_mb: float) -> runs.RunStore:
    return runs.RunStore(location or None, size_cap_mb=size_cap_mb)


def run_store() -> runs.RunStore:
    """The process's run store, from WORKBENCH_RUNS_URL (or secrets); errors propagate."""
    settings = Settings.from_env(secrets())
    return shared_store(settings.runs_url, settings.runs_size_cap_mb)


def explanation_made_for(result):
    """The explanation `explain_panel` already made for this result, if any."""
    for made_from, explanation in st.session_state.get(Keys.EXPLANATIONS, {}).values():
        if made_from and made_from[0] is result:
            return explanation
    return None


def record_of(result, figure, entry: PageEntry) -> runs.RunRecord:
    """The run of `result` as `entry`'s page shows it (figure, explanation, options, inputs)."""
    origin = origin_of(result)
    model = origin.model() if origin is not None else None
    model_ref = runs.model_ref(model) if model is not None else runs.ModelRef(
        str(getattr(result, "model_name", st.session_state.get(Keys.MODEL, ""))))
    prompts = [getattr(result, "prompt", None) or (
        st.session_state.get(Keys.PROMPT, "") if entry.uses_prompt else "")]
    explanation = explanation_made_for(result)
    return runs.record_for(
        result, page=entry.url_path, model=model_ref, prompts=[p for p in prompts if p],
        options=page_options(entry.path), figures=[figure] if figure is not None else [],
        explanation=explanation.markdown if explanation is not None else "",
        explanation_source=explanation.source if explanation is not None else "",
        calls=[origin.call] if origin is not None and origin.call is not None else [],
        parents=parents_of(origin),
        timings={"compute_s": origin.seconds} if origin is not None else {},
        title=f"{entry.title}: {type(result).__name__}")


def save(result, figure, key: str, entry: PageEntry) -> None:
    try:
        saved = run_store().save(record_of(result, figure, entry))
    except (InterpError, SQLAlchemyError, OSError) as error:  # a full disk, a server gone
        st.session_state[key + ".saved"] = ("error", str(error))
        return
    st.session_state[key + ".saved"] = ("ok", saved.id)
    note_saved(result, saved.content_hash)
    configured = secrets()
    if wandb_enabled(configured):  # off, and invisible, without wandb and a key
        problem = log_run(saved, configured)
        if problem is not None:
            st.session_state[key + ".saved"] = ("wandb", problem)


def save_run_button(result, figure, key: str) -> None:
    """A "Save run" button; after a save, the run's id (or why it could not be saved)."""
    st.button("Save run", key=f"{key}.save", icon=":material/bookmark_add:",
              on_click=save, args=(result, figure, key, running_page()),
              help="Keep this result with its inputs, figure and explanation in the run store "
                   "(the Runs page lists, compares and reports saved runs).")
    outcome = st.session_state.pop(key + ".saved", None)
    if outcome is not None:
        kind, text = outcome
        if kind == "ok":
            st.caption(f"Saved as run `{text}` (see the Runs page).")
        elif kind == "wandb":
            st.warning(text)
        else:
            st.warning(f"The run was not saved: {text}")
