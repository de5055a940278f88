"""The choices behind an AI explanation: which Groq model, for which reader, with which limits.

`GROQ_MODELS` is the list a page offers (any other model id may be typed in); `LLMSettings` holds
one choice, checked when it is made, and is part of the cache key only through `model` and `level`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from interp.errors import InvalidOptionError, invalid_choice

GROQ_API_URL = "https://api.groq.com"
# Where the client sends requests instead of Groq: a test's fake server, or a proxy a host requires.
BASE_URL_VARIABLE = "WORKBENCH_GROQ_BASE_URL"
# Seconds to wait for each read from Groq: a host behind a slow proxy raises it, tests lower it.
TIMEOUT_VARIABLE = "WORKBENCH_GROQ_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MODEL = "openai/gpt-oss-20b"


@dataclass(frozen=True)
class GroqModel:
    id: str
    label: str


# Groq's chat models as listed on console.groq.com/docs/models (production: the first four) and
# in the groq 1.7 client's own model hints; Groq retires models, so a typed-in id is allowed too.
GROQ_MODELS = (  # labels short enough for the sidebar's picker (~30 characters show)
    GroqModel("openai/gpt-oss-20b", "GPT-OSS 20B · fast, default"),
    GroqModel("openai/gpt-oss-120b", "GPT-OSS 120B (OpenAI)"),
    GroqModel("llama-3.3-70b-versatile", "Llama 3.3 70B Versatile"),
    GroqModel("llama-3.1-8b-instant", "Llama 3.1 8B · fastest"),
    GroqModel("qwen/qwen3-32b", "Qwen3 32B · preview"),
    GroqModel("meta-llama/llama-4-scout-17b-16e-instruct", "Llama 4 Scout 17B · preview"),
    GroqModel("moonshotai/kimi-k2-instruct", "Kimi K2 · preview"),
)
GROQ_MODEL_IDS = tuple(model.id for model in GROQ_MODELS)

LEVELS = ("newcomer", "researcher")


def groq_base_url(environ: Mapping[str, str] | None = None) -> str:
    """`WORKBENCH_GROQ_BASE_URL` when set (not blank), else Groq's own API address."""
    environ = os.environ if environ is None else environ
    return environ.get(BASE_URL_VARIABLE, "").strip() or GROQ_API_URL
def groq_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """`WORKBENCH_GROQ_TIMEOUT_S` when set to a positive number of seconds, else 20 s."""
    environ = os.environ if environ is None else environ
    raw = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise InvalidOptionError(
            f"{TIMEOUT_VARIABLE} must be a positive number of seconds; got {raw!r}.")
    return value


MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")


@dataclass(frozen=True)
class LLMSettings:
    """How to ask Groq: model id, reader level ("newcomer" or "researcher") and the limits.

    `timeout_s` bounds each HTTP read; rate limits (429) and server errors (5xx) are retried up to
    `max_retries` times, waiting what the server's `retry-after` asks (up to `max_retry_wait_s`,
    beyond which the call gives up at once) or `backoff_s` doubling per attempt. A failure is
    answered from memory for `failure_memo_s` seconds (0: ask Groq again now, e.g. "Try again").
    """

    model: str = DEFAULT_MODEL
    level: str = "newcomer"
    timeout_s: float = field(default_factory=groq_timeout_s)
    max_retries: int = 2
    max_retry_wait_s: float = 10.0
    backoff_s: float = 0.5
    max_completion_tokens: int = 1500
    temperature: float = 0.2
    base_url: str = field(default_factory=groq_base_url)
    failure_memo_s: float = 60.0

    def __post_init__(self):
        model = str(self.model).strip()
        if not MODEL_ID.fullmatch(model):
            raise InvalidOptionError(
                f"{self.model!r} is not a model id (letters, digits and . _ / : - only). Groq "
                f"models offered: {', '.join(GROQ_MODEL_IDS)}.")
        object.__setattr__(self, "model", model)
        if self.level not in LEVELS:
            raise invalid_choice("audience level", self.level, LEVELS)
        for name in ("timeout_s", "max_retry_wait_s", "max_completion_tokens"):
            if not getattr(self, name) > 0:
                raise InvalidOptionError(f"{name} must be positive; got {getattr(self, name)!r}.")
        for name in ("max_retries", "backoff_s", "failure_memo_s"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(f"{name} can't be negative; got {getattr(self, name)!r}.")
        if not 0 <= self.temperature <= 2:
            raise InvalidOptionError(f"temperature must be between 0 and 2; got {self.temperature!r}.")
