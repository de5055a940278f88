"""The Groq key's sources, in order, and a holder that never shows it; the settings' checks."""

from __future__ import annotations

import pickle

import pytest

from interp.errors import InvalidOptionError
from interp.explain_llm import (
    DEFAULT_MODEL,
    GROQ_MODEL_IDS,
    LLMSettings,
    resolve_key,
)

SECRET, ENVIRONMENT, SESSION = "gsk_from_secrets_111", "gsk_from_env_222", "gsk_typed_333"


class MissingSecrets:
    """Like `st.secrets` with no secrets file: reading it raises FileNotFoundError."""

    def get(self, name, default=None):
        raise FileNotFoundError("No secrets found.")


def test_secrets_come_first_then_the_environment_then_the_session():
    environ = {"GROQ_API_KEY": ENVIRONMENT}
    found = resolve_key({"GROQ_API_KEY": SECRET}, SESSION, environ)
    assert (found.key.reveal(), found.source) == (SECRET, "secrets")
    found = resolve_key({}, SESSION, environ)
    assert (found.key.reveal(), found.source) == (ENVIRONMENT, "environment")
    found = resolve_key(MissingSecrets(), SESSION, {"GROQ_API_KEY": "  "})
    assert (found.key.reveal(), found.source) == (SESSION, "this session")
    assert found.label == "key set (from this session)"
    assert resolve_key(MissingSecrets(), "", {}) is None


def test_the_key_is_hidden_from_repr_str_format_and_pickle():
    found = resolve_key({}, f"  {SESSION} ", {})
    key = found.key
    logged = "%s" % key  # noqa: UP031 - the way logging formats its arguments
    shown = [repr(key), str(key), f"{key}", f"{key!r}", logged, repr(found), str([key])]
    assert not [text for text in shown if SESSION in text]
    assert key.reveal() == SESSION  # stripped of the spaces typed around it
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert key.redact(f"Invalid key {SESSION}.") == "Invalid key [key hidden]."


def test_settings_check_the_level_and_accept_any_model_id():
    assert LLMSettings().model == DEFAULT_MODEL == "openai/gpt-oss-20b"
    assert DEFAULT_MODEL in GROQ_MODEL_IDS
    assert LLMSettings(model="  some-lab/new-model-1.5 ").model == "some-lab/new-model-1.5"
    with pytest.raises(InvalidOptionError, match="'newcomer', 'researcher'"):
        LLMSettings(level="expert")
    with pytest.raises(InvalidOptionError, match="openai/gpt-oss-120b"):
        LLMSettings(model="not a model id")
    with pytest.raises(InvalidOptionError, match="timeout_s"):
        LLMSettings(timeout_s=0)


def test_the_read_timeout_comes_from_the_environment_when_set(monkeypatch):
    """Reference: the documented default (20 s) and the variable's value as typed."""
    from interp.explain_llm.settings import TIMEOUT_VARIABLE, groq_timeout_s
    assert groq_timeout_s({}) == 20.0
    assert groq_timeout_s({TIMEOUT_VARIABLE: " 2.5 "}) == 2.5
    monkeypatch.setenv(TIMEOUT_VARIABLE, "7")
    assert LLMSettings().timeout_s == 7.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(InvalidOptionError, match=TIMEOUT_VARIABLE):
            groq_timeout_s({TIMEOUT_VARIABLE: bad})
