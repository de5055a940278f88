"""The one place `interp` touches Streamlit: models held once per process, within a budget.

Language models are keyed by their name string (nothing large is hashed) and kept by
`interp.memory_budget.LanguageModelCache`: at most `WORKBENCH_MAX_MODELS` of them (default 2),
all models together within `WORKBENCH_MEMORY_BUDGET_GB` (default 2.7, Community Cloud's size),
each read from the environment or `st.secrets`. The cache itself is a `st.cache_resource`
singleton; it does its own eviction, so the budget never loses track of a model that
Streamlit dropped while a session still held it. The toxicity classifier (`shared_classifier`)
is held once per process too, and counts against the same budget.
"""

from __future__ import annotations

import streamlit as st

from interp.memory_budget import (
    DEFAULT_MAX_LANGUAGE_MODELS,
    LanguageModelCache,
    MemoryBudget,
    max_language_models,
    memory_budget_bytes,
)
from interp.models import LoadedModel

MAX_MODELS_IN_MEMORY = DEFAULT_MAX_LANGUAGE_MODELS


def secrets() -> dict:
    """The app's Streamlit secrets, or none when there is no secrets file."""
    if not st.secrets.load_if_toml_exists():
        return {}
    return dict(st.secrets)


@st.cache_resource(show_spinner=False)
def model_cache() -> LanguageModelCache:
    """The process's language models and the memory budget every held model counts against."""
    configured = secrets()
    return LanguageModelCache(MemoryBudget(memory_budget_bytes(configured)),
                              max_models=max_language_models(configured))


def shared_model(name_or_path: str, progress=None) -> LoadedModel:
    """The shared `LoadedModel` for this name; failed loads are not kept, so a retry retries.
    `progress(bytes_done, bytes_total)` follows the download of a model not yet cached."""
    return model_cache().get(name_or_path, progress)


def memory_budget() -> MemoryBudget:
    """The budget other held models (the toxicity classifier) check and `track` against."""
    return model_cache().budget


@st.cache_resource(show_spinner=False, max_entries=1)
def shared_classifier(model_type: str, checkpoint: str = "", config_folder: str = ""):
    """The shared toxicity classifier (one at a time), counted against the same memory budget
    as the language models; a failed load raises `ClassifierUnavailableError` and is not kept."""
    from interp.toxicity import ClassifierSource, load_classifier

    source = ClassifierSource(model_type=model_type, checkpoint=checkpoint,
                              config_folder=config_folder)
    return load_classifier(source, budget=memory_budget())
