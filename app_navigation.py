"""GPT-2 Interpretability Workbench: the navigation script (pages and the shared sidebar).

`streamlit_app.py` serves it, with the JSON API beside it; every browser session runs this file.
It lives apart from the entry file because uvicorn imports that file as a module: a page body
there would run at import, outside any script run (see FIELD-NOTES).
"""

from __future__ import annotations

import streamlit as st

from interp.models import MODEL_REGISTRY, is_available
from interp.settings import Settings, apply_torch_threads
from pages.kit import (
    COMPARE_INPUTS,
    COMPARE_PROMPTS,
    CUSTOM_CHOICE,
    DEFAULT_PROMPT,
    DEFAULT_PROMPT_B,
    PAGES,
    Keys,
    PageEntry,
    compare_mode,
    default_model_key,
    model_label,
    model_note,
    model_options,
)
from pages.kit.ai import sidebar_controls as ai_sidebar_controls
from pages.kit.links import apply_shared_link

apply_torch_threads(Settings.from_env(st.secrets if st.secrets.load_if_toml_exists() else None))
st.set_page_config(page_title="GPT-2 Interpretability Workbench", page_icon="🔬",
                   layout="wide")


def init_state() -> None:
    defaults = {
        Keys.MODEL: default_model_key() or "gpt2",
        Keys.PROMPT: DEFAULT_PROMPT,
        Keys.COMPARE: False,
        Keys.COMPARE_MODE: COMPARE_PROMPTS,
        Keys.PROMPT_B: DEFAULT_PROMPT_B,
        Keys.MODEL_B: default_model_key() or "gpt2",
        Keys.CUSTOM_MODEL: "",
        Keys.CUSTOM_MODEL_B: "",
        Keys.SHELL_READY: True,
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
        # Streamlit forgets a widget's value in a run that does not draw it; the sidebar hides
        # controls a page does not use, so each value is handed back to session state here.
        st.session_state[key] = st.session_state[key]
    for choice in (Keys.MODEL, Keys.MODEL_B):
        if st.session_state[choice] not in model_options():  # custom models switched off
            st.session_state[choice] = defaults[choice]


def gpt2_missing_note() -> None:
    if not is_available(MODEL_REGISTRY["gpt2"]):
        st.caption("GPT-2 is not loaded because it is not in the local Hugging Face cache and this "
                   "machine may be offline; pick it to try a download, or use the demo model.")


def compare_controls(entry: PageEntry) -> None:
    """The Compare switch, only on pages that can compare, offering only their modes."""
    if not entry.compare_modes:
        return
    st.toggle("Compare", key=Keys.COMPARE,
              help="Show " + " or ".join(m.lower() for m in entry.compare_modes) +
                   " side by side.")
    mode = compare_mode(entry)
    if mode is None:
        return
    if len(entry.compare_modes) > 1:
        st.radio("Compare with", entry.compare_modes, key=Keys.COMPARE_MODE, horizontal=True)
    else:
        st.caption(f"Compare with: {mode.lower()}")
    if mode == COMPARE_PROMPTS:
        st.text_area("Second prompt", key=Keys.PROMPT_B, height=90)
    elif mode == COMPARE_INPUTS:
        st.caption("Each side has its own inputs on the page.")
    else:
        st.selectbox("Second model", model_options(), key=Keys.MODEL_B, format_func=model_label)
        st.caption(model_note(st.session_state[Keys.MODEL_B]))
        if st.session_state[Keys.MODEL_B] == CUSTOM_CHOICE:
            st.text_input("Second model: Hugging Face id or local folder",
                          key=Keys.CUSTOM_MODEL_B, placeholder="EleutherAI/pythia-70m or /path")


def sidebar(entry: PageEntry) -> None:
    with st.sidebar:
        st.header("Model and input")
        st.selectbox("Model", model_options(), key=Keys.MODEL, format_func=model_label,
                     help="Sizes are parameters; RAM is what loading and running needs in float32.")
        st.caption(model_note(st.session_state[Keys.MODEL]))
        if st.session_state[Keys.MODEL] == CUSTOM_CHOICE:
            st.text_input("Hugging Face id or local folder", key=Keys.CUSTOM_MODEL,
                          placeholder="EleutherAI/pythia-70m or /path/to/folder",
                          help="Any causal language model that TransformerLens supports.")
        gpt2_missing_note()
        if entry.uses_prompt:
            st.text_area("Prompt", key=Keys.PROMPT, height=110)
        compare_controls(entry)
        ai_sidebar_controls()


apply_shared_link(model_options())  # a shared link's model, prompt and options, once
init_state()
navigation = st.navigation([
    st.Page(entry.path, title=entry.title, icon=entry.icon, url_path=entry.url_path,
            default=(index == 0))
    for index, entry in enumerate(PAGES)
])
deep_link = st.session_state.pop(Keys.DEEP_LINK, None)
if deep_link:
    st.switch_page(deep_link)
current = next((entry for entry in PAGES if entry.url_path == navigation.url_path), PAGES[0])
st.session_state[Keys.PAGE] = current.path
sidebar(current)
navigation.run()
