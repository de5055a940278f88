"""The one place `interp` touches Streamlit: models held once per process with `st.cache_resource`.

Models are keyed by their name string, so nothing large is hashed, and at most two stay in memory.
"""

from __future__ import annotations

import streamlit as st

from interp.models import LoadedModel, load_model

MAX_MODELS_IN_MEMORY = 2


@st.cache_resource(max_entries=MAX_MODELS_IN_MEMORY, show_spinner=False)
def shared_model(name_or_path: str) -> LoadedModel:
    """The shared `LoadedModel` for this name; failed loads are not cached, so a retry retries."""
    return load_model(name_or_path)
