"""AI explanations: a Groq model retells a result's facts in plain language, checked line by line.

The request carries the facts the offline explanation (`interp.explain`) was written from and the
method's own description, never tensors; the reply is checked against those facts, and every name
or value it gives that the result does not hold is marked unverified. With no key, or when Groq
fails, the offline explanation comes back in its place with a one-line reason.

    key = resolve_key(secrets=st.secrets, session_value=typed_key)     # or None
    explanation = explain_with_llm(result, LLMSettings(model=..., level="newcomer"), key)
    stream = stream_explanation(result, settings, key)   # iterate for text, then stream.result()
    render_markdown(explanation), to_markdown(explanation), to_record(explanation)
"""

from interp.explain_llm.cache import REPLY_CACHE, ReplyCache
from interp.explain_llm.explainer import (
    ExplanationStream,
    explain_with_llm,
    offline_explanation,
    stream_explanation,
)
from interp.explain_llm.explanation import LLMExplanation, render_markdown, to_markdown, to_record
from interp.explain_llm.failures import (
    BadKeyError,
    BadReplyError,
    LLMError,
    LLMTimeoutError,
    NoKeyError,
    NoNetworkError,
    RateLimitedError,
    RequestRefusedError,
    ServerError,
    TruncatedReplyError,
)
from interp.explain_llm.grounding import GroundingReport, Mention, check_grounding, known_facts
from interp.explain_llm.key import KEY_NAME, KEY_SOURCES, ApiKey, ResolvedKey, resolve_key
from interp.explain_llm.render import escape_reply
from interp.explain_llm.settings import (
    DEFAULT_MODEL,
    GROQ_MODEL_IDS,
    GROQ_MODELS,
    LEVELS,
    GroqModel,
    LLMSettings,
)

__all__ = [
    "ApiKey", "BadKeyError", "BadReplyError", "DEFAULT_MODEL", "ExplanationStream", "GROQ_MODELS",
    "GROQ_MODEL_IDS", "GroqModel", "GroundingReport", "KEY_NAME", "KEY_SOURCES", "LEVELS",
    "LLMError", "LLMExplanation", "LLMSettings", "LLMTimeoutError", "Mention", "NoKeyError",
    "NoNetworkError", "RateLimitedError", "REPLY_CACHE", "ReplyCache", "RequestRefusedError",
    "ResolvedKey", "ServerError", "TruncatedReplyError", "check_grounding", "escape_reply",
    "explain_with_llm", "known_facts", "offline_explanation", "render_markdown", "resolve_key",
    "stream_explanation", "to_markdown", "to_record",
]
