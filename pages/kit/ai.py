"""The Explain panel's AI half: a Groq explanation of a result, streamed in, checked and kept.

The offline explanation is always shown first and labelled; with a Groq key (app secrets, the
environment, or the sidebar's password field for this session) an "Explain with Groq" button
streams the reply in, then shows it checked against the result's facts. Each explanation is kept
in this session per (result, model, level), so a rerun shows it again without asking Groq.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from interp.errors import InterpError
from interp.explain import Explanation
from interp.explain_llm import (
    DEFAULT_MODEL,
    GROQ_MODEL_IDS,
    GROQ_MODELS,
    LEVELS,
    LLMExplanation,
    LLMSettings,
    ResolvedKey,
    render_markdown,
    resolve_key,
    stream_explanation,
    to_markdown,
)
from pages.kit.models import show_error
from pages.kit.state import Keys

OTHER_MODEL = "Other (type a Groq model id)"
MODEL_LABELS = {model.id: model.label for model in GROQ_MODELS} | {OTHER_MODEL: OTHER_MODEL}
OFFLINE_LABEL = "Offline explanation, written by a template from the result's own numbers."


def app_secrets():
    """`st.secrets`, or None when the app has no secrets file (reading it would raise)."""
    return st.secrets if st.secrets.load_if_toml_exists() else None


def current_key() -> ResolvedKey | None:
    """The Groq key from secrets, the environment, or the sidebar field (this session only)."""
    return resolve_key(secrets=app_secrets(), session_value=st.session_state.get(Keys.GROQ_KEY))


def sidebar_controls() -> None:
    """The sidebar's "AI explanations" expander: an optional key, the model and the level."""
    with st.expander("AI explanations"):
        found = current_key()
        if found is None or found.source == "this session":
            st.text_input("Groq API key (kept for this session only)", type="password",
                          key=Keys.GROQ_KEY, help="Or set GROQ_API_KEY in the app's secrets or "
                          "the environment. Without a key, explanations are offline.")
        st.caption(found.label if found is not None else "No key set: offline explanations only.")
        st.selectbox("Model", list(GROQ_MODEL_IDS) + [OTHER_MODEL], key=Keys.GROQ_MODEL,
                     format_func=MODEL_LABELS.get)
        if st.session_state.get(Keys.GROQ_MODEL) == OTHER_MODEL:
            st.text_input("Groq model id", key=Keys.GROQ_MODEL_TYPED, placeholder=DEFAULT_MODEL)
        st.radio("Explain for a", LEVELS, key=Keys.GROQ_LEVEL, horizontal=True)


def current_settings() -> LLMSettings:
    """The sidebar's choice of model and level (raises InvalidOptionError for a bad model id)."""
    model = st.session_state.get(Keys.GROQ_MODEL) or DEFAULT_MODEL
    if model == OTHER_MODEL:
        model = st.session_state.get(Keys.GROQ_MODEL_TYPED) or DEFAULT_MODEL
    return LLMSettings(model=model, level=st.session_state.get(Keys.GROQ_LEVEL) or LEVELS[0])


def show_offline(offline: Explanation) -> None:
    st.caption(OFFLINE_LABEL)
    st.markdown(offline.markdown)


def show_explanation(explanation: LLMExplanation, key: str) -> None:
    """The AI reply (escaped, unverified spans highlighted, the count above it), or the one-line
    reason and the offline text in its place; then "copy as Markdown"."""
    if explanation.is_ai:
        st.caption(explanation.source_label())
        if explanation.grounding is not None:
            st.caption(explanation.grounding.summary())
        st.markdown(render_markdown(explanation))
    else:
        st.warning(explanation.message or "The AI explanation is not available.")
        show_offline(explanation.offline)
    st.download_button("Copy as Markdown", data=to_markdown(explanation),
                       file_name="explanation.md", mime="text/markdown", key=f"{key}.markdown",
                       on_click="ignore")


def kept_explanation(key: str, made_from: tuple) -> LLMExplanation | None:
    stored = st.session_state.get(Keys.AI_EXPLANATIONS, {}).get(key)
    if stored is None or len(stored[0]) != len(made_from) or any(
            old is not new for old, new in zip(stored[0], made_from, strict=True)):
        return None
    return stored[1]


def ask_groq(result, settings: LLMSettings, found: ResolvedKey, context: dict) -> LLMExplanation:
    """Stream Groq's reply into the page, then clear it for the checked explanation."""
    stream = stream_explanation(result, settings, found, **context)
    live = st.empty()
    with live.container():
        st.write_stream(stream)
    live.empty()
    return stream.result()


def ai_panel(result, offline: Explanation, key: str, context: dict) -> None:
    """The Explain panel's body: the kept AI explanation, or the offline one with the button."""
    found = current_key()
    if found is None:
        show_offline(offline)
        st.caption("For an AI explanation, set a Groq API key (sidebar, AI explanations).")
        return
    try:
        settings = current_settings()
    except InterpError as error:
        show_error(error)
        show_offline(offline)
        return
    # Kept per result (the very object, as the offline explanation is), model and level.
    panel_key = f"{key}.{settings.model}.{settings.level}"
    made_from = (result, *context.values())
    explanation = kept_explanation(panel_key, made_from)
    label = "Try Groq again" if explanation is not None and not explanation.is_ai else \
        "Explain with Groq"
    if (explanation is None or not explanation.is_ai) and st.button(
            label, key=f"{key}.groq", help=f"{found.label}; sends the result's numbers and the "
            f"prompt to {settings.model} on Groq."):
        retry = explanation is not None  # a failure the library remembers: ask again now
        asked = dataclasses.replace(settings, failure_memo_s=0) if retry else settings
        explanation = ask_groq(result, asked, found, context)
        st.session_state.setdefault(Keys.AI_EXPLANATIONS, {})[panel_key] = (made_from, explanation)
    if explanation is None:
        st.caption(found.label)
        show_offline(offline)
        return
    show_explanation(explanation, panel_key)
