"""Deployment settings: how much memory, how many models and threads the app may use on its host.

Each setting is read from an environment variable, else from the entry of the same name in a
secrets mapping (Streamlit's `st.secrets`, handed in by the app, since `interp` never imports
Streamlit), else it takes a default sized for Streamlit Community Cloud (about 2.7 GB of memory,
at most 2 CPU cores). The queue settings bound how many analyses wait for a shared model.
`WORKBENCH_ALLOW_CUSTOM_MODELS` decides whether visitors may load any
Hugging Face id or local folder; a public deployment switches it off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from interp.errors import InvalidOptionError, ModelNotAllowedError
from interp.model_queue import QueueLimits

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
COMMUNITY_CLOUD_MEMORY_GB = 2.7
COMMUNITY_CLOUD_CORES = 2


def flag(value: object, name: str) -> bool:
    """A boolean setting written as a bool or as one of the usual words."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidOptionError(f"{name} is {value!r}; set it to one of "
                             f"{', '.join(TRUE_WORDS + FALSE_WORDS)}.")


def positive_int(value: object, name: str) -> int:
    """A setting's value as a positive integer, or an error naming the setting."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidOptionError(f"{name} is {value!r}; set it to a whole number of at least 1.")
    return number


def positive_float(value: object, name: str) -> float:
    """A setting's value as a positive number, or an error naming the setting."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = 0.0
    if not number > 0:
        raise InvalidOptionError(f"{name} is {value!r}; set it to a number above 0 (e.g. 2.7).")
    return number


def optional_text(value: object, name: str) -> str:
    """A free-text setting such as a file path (already known to be non-empty)."""
    return str(value).strip()


def default_torch_threads() -> int:
    """Community Cloud gives at most 2 cores; more torch threads than cores only contend."""
    return max(1, min(COMMUNITY_CLOUD_CORES, os.cpu_count() or 1))


@dataclass(frozen=True)
class Settings:
    """The host's limits for the app; the README's settings table documents each field."""

    # Memory the models held may take together, language models and classifiers alike.
    memory_budget_gb: float = field(default=COMMUNITY_CLOUD_MEMORY_GB,
                                    metadata={"parse": positive_float})
    # At most this many language models stay loaded, shared by every session.
    max_models: int = field(default=2, metadata={"parse": positive_int})
    # Whether visitors may load any Hugging Face id or local folder ("Other" in the sidebar).
    allow_custom_models: bool = field(default=True, metadata={"parse": flag})
    # Threads torch uses for one forward pass (intra-op).
    torch_threads: int = field(default_factory=default_torch_threads,
                               metadata={"parse": positive_int})
    # Results kept by the cross-session result cache, per analysis, and for how long.
    result_cache_entries: int = field(default=16, metadata={"parse": positive_int})
    result_cache_ttl_s: int = field(default=3600, metadata={"parse": positive_int})
    # A local Detoxify checkpoint (.ckpt) and the Hugging Face config/tokenizer folder it needs,
    # for the toxicity classifier offline ("" = Detoxify's standard download).
    detoxify_checkpoint: str = field(default="", metadata={"parse": optional_text})
    detoxify_config: str = field(default="", metadata={"parse": optional_text})
    # Analyses that may wait for one shared model (beyond it: "busy, try again in a moment"),
    # how many of them one session (or API client) may have, and the longest estimated wait
    # an API request accepts before it is answered 503 with Retry-After.
    queue_length: int = field(default=16, metadata={"parse": positive_int})
    queue_per_session: int = field(default=2, metadata={"parse": positive_int})
    api_max_wait_s: float = field(default=60.0, metadata={"parse": positive_float})
    # The JSON API under /api (streamlit_app.py): whether it is served at all, the bearer token
    # every call but /api/health then needs ("" = none; never shown, logged or compared by
    # `==`), requests one client may make per minute, the largest request body, and the
    # threads that run its model work (beside the pages' own script threads).
    api: bool = field(default=True, metadata={"parse": flag})
    api_token: str = field(default="", repr=False, compare=False,
                           metadata={"parse": optional_text})
    api_requests_per_minute: int = field(default=60, metadata={"parse": positive_int})
    api_max_body_kb: int = field(default=256, metadata={"parse": positive_int})
    api_workers: int = field(default=2, metadata={"parse": positive_int})
    # Where saved runs are kept: a SQLAlchemy URL (e.g. one PostgreSQL for every replica) or a
    # SQLite file path ("" = runs.sqlite under the user's data directory), and the size above
    # which a run keeps its inputs, figures and summaries but not its raw tensors.
    runs_url: str = field(default="", metadata={"parse": optional_text})
    runs_size_cap_mb: float = field(default=50.0, metadata={"parse": positive_float})

    @property
    def queue_limits(self) -> QueueLimits:
        """The limits every shared model's queue applies to owned analyses."""
        return QueueLimits(max_waiting=self.queue_length, per_owner=self.queue_per_session)

    @classmethod
    def from_env(cls, secrets: Mapping | None = None,
                 environ: Mapping[str, str] | None = None) -> Settings:
        """Each setting from its environment variable, else from `secrets`, else the default."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            name = env_name(setting.name)
            raw = environ.get(name, "")
            if not raw.strip() and secrets is not None and name in secrets:
                raw = secrets[name]
            if raw is not None and str(raw).strip():
                values[setting.name] = setting.metadata["parse"](raw, name)
        return cls(**values)


def env_name(field_name: str) -> str:
    """The environment variable (and secrets key) of a setting: WORKBENCH_ + its name."""
    return "WORKBENCH_" + field_name.upper()


def apply_torch_threads(settings: Settings) -> None:
    """Set torch's thread count (cheap to repeat: the app calls it on every script run)."""
    import torch

    if torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


ALLOW_CUSTOM_MODELS = env_name("allow_custom_models")


def custom_models_allowed(secrets: Mapping | None = None,
                          environ: Mapping[str, str] | None = None) -> bool:
    """Whether custom model ids and folders may load (on when the setting is not given)."""
    return Settings.from_env(secrets, environ).allow_custom_models


def check_model_allowed(name_or_path: str, allowed: bool) -> None:
    """Refuse anything but a registered model's key when custom models are switched off.

    The message is the same for every refused name, so it reveals nothing about what exists."""
    from interp.models import MODEL_REGISTRY

    if allowed or name_or_path.strip() in MODEL_REGISTRY:
        return
    raise ModelNotAllowedError(
        "This deployment serves only its listed models; custom Hugging Face ids and folders are "
        f"switched off ({ALLOW_CUSTOM_MODELS}). Choose one of: {', '.join(MODEL_REGISTRY)}.")
