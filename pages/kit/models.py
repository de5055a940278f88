"""Choosing and loading the model: sidebar choices, labels, the custom-model setting, and
loading with a clear message (never a traceback) when a model can't be had."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st

from interp.caching import shared_model
from interp.errors import InterpError
from interp.explain import md_escape
from interp.models import (
    MODEL_REGISTRY,
    ModelSpec,
    default_model_name,
    is_available,
    param_count_label,
)
from interp.settings import check_model_allowed, custom_models_allowed
from pages.kit.registry import NAVIGATION_SCRIPT, page_for_url
from pages.kit.state import Keys

CUSTOM_CHOICE = "other"
DEFAULT_PROMPT = "When Mary and John went to the store, John gave a drink to"
DEFAULT_PROMPT_B = "When Mary and John went to the store, Mary gave a drink to"


def custom_allowed() -> bool:
    """WORKBENCH_ALLOW_CUSTOM_MODELS from the environment or st.secrets (on when unset)."""
    try:
        secrets = dict(st.secrets)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        secrets = {}  # no secrets file: a local install
    return custom_models_allowed(secrets)


def require_app_shell() -> None:
    """Make sure this page runs inside the app's navigation script (sidebar, navigation, state defaults).

    Because the page files live in `pages/`, Streamlit's legacy multipage mode serves the very
    first request of a fresh server by running the page file alone when that request is a deep
    link (`/patching`). We send such a run through the entry point, remembering the page, and
    the navigation script switches back to it once navigation is set up.
    """
    if st.session_state.get(Keys.SHELL_READY):
        from pages.kit.links import share_control, show_notices
        from pages.kit.registry import page_in_stack

        page = page_in_stack(direct=True)  # the page's own call, at its top: once per run
        if page is not None:
            show_notices()
            with st.sidebar:
                share_control(page)
        return
    target = page_for_url(st.context.url)
    st.session_state[Keys.DEEP_LINK] = target.path if target else None
    st.switch_page(NAVIGATION_SCRIPT)


def model_options() -> list[str]:
    return [*MODEL_REGISTRY, CUSTOM_CHOICE] if custom_allowed() else list(MODEL_REGISTRY)


def default_model_key() -> str | None:
    """The model the sidebar starts with (`interp.models.default_model_name`)."""
    return default_model_name()


def model_label(key: str) -> str:
    if key == CUSTOM_CHOICE:
        return "Other: a Hub id or a folder"
    # Short enough for the sidebar's picker (~30 characters show); the RAM is in `model_note`.
    spec: ModelSpec = MODEL_REGISTRY[key]
    where = "" if is_available(spec) else " · download"
    return f"{spec.label} · {param_count_label(spec.n_params)}{where}"


def model_note(key: str) -> str:
    """The chosen model's size, memory and whether it must be downloaded, in one line."""
    if key == CUSTOM_CHOICE:
        return "Any causal language model TransformerLens supports, by Hub id or folder."
    spec: ModelSpec = MODEL_REGISTRY[key]
    ram = f"~{spec.ram_gb:g} GB of RAM" if spec.ram_gb >= 0.1 else "under 0.1 GB of RAM"
    where = ("in the local cache" if is_available(spec)
             else "needs a download from the Hugging Face Hub")
    return f"{param_count_label(spec.n_params)} parameters, {ram}; {where}."


def chosen_model_name(choice_key: str = Keys.MODEL) -> str:
    choice = st.session_state.get(choice_key) or default_model_key() or "gpt2"
    if choice == CUSTOM_CHOICE:
        typed = Keys.CUSTOM_MODEL_B if choice_key == Keys.MODEL_B else Keys.CUSTOM_MODEL
        return (st.session_state.get(typed) or "").strip()
    return choice


def show_error(error: InterpError | str) -> None:
    """The error's message as typed: user text quoted in it must not turn into Markdown."""
    st.error(md_escape(str(error)), icon=":material/error:")


def offer_available_models(choice_key: str) -> None:
    """After a failed load: buttons that switch to each model that can load here."""
    loadable = [key for key, spec in MODEL_REGISTRY.items() if is_available(spec)]
    if not loadable:
        st.info("No model can load without a download here. Add a local Hugging Face folder "
                "under 'Other', or connect to the internet once.")
        return
    st.write("These models can load right now:")
    for key in loadable:
        st.button(f"Use {MODEL_REGISTRY[key].label}", key=f"use-{choice_key}-{key}",
                  on_click=st.session_state.__setitem__, args=(choice_key, key))


def download_progress(name: str):
    """A `progress(bytes_done, bytes_total)` that draws a bar the first time a download reports
    (a cached model never does), and removes it when the download is complete."""
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0)
        fraction = done / total if total else 1.0
        bar.progress(min(fraction, 1.0), text=f"Downloading {md_escape(name)} from the Hugging "
                     f"Face Hub: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB. Other models, such "
                     "as the demo model, stay usable meanwhile.")
        if done >= total:
            bar.empty()

    return report


def try_load_model(choice_key: str = Keys.MODEL):
    """The chosen shared model, or None after showing why it can't load and what can."""
    name = chosen_model_name(choice_key)
    if not name:
        st.warning("Type a Hugging Face model id or a local folder in the sidebar.")
        return None
    try:
        check_model_allowed(name, custom_allowed())
        with st.spinner(f"Loading {md_escape(name)} ..."):
            model = shared_model(name, download_progress(name))
    except InterpError as error:
        show_error(error)
        offer_available_models(choice_key)
        return None
    if model.info.is_demo:
        st.caption(":material/science: **Demo model, not GPT-2**: a small GPT-2-architecture "
                   "model bundled with the app and trained on synthetic text (see its model card).")
    return model


def load_chosen_model(choice_key: str = Keys.MODEL):
    """The chosen shared model, or stop the page with a clear message and alternatives."""
    require_app_shell()
    model = try_load_model(choice_key)
    if model is None:
        st.stop()
    return model


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Show `interp`'s typed errors as messages and stop the page, never as a traceback."""
    try:
        yield
    except InterpError as error:
        show_error(error)
        st.stop()
