"""Deployment settings read from the environment or from a secrets mapping (Streamlit's
`st.secrets`, handed in by the app, since `interp` never imports Streamlit).

`WORKBENCH_ALLOW_CUSTOM_MODELS` decides whether users may load any Hugging Face id or local
folder. On a public server that choice lets a visitor probe the file system through the
different error messages and start downloads of any size, so a deployment switches it off and
serves only the models of `MODEL_REGISTRY`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from interp.errors import InvalidOptionError, ModelNotAllowedError
from interp.models import MODEL_REGISTRY

ALLOW_CUSTOM_MODELS = "WORKBENCH_ALLOW_CUSTOM_MODELS"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def flag(value, name: str) -> bool:
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


def custom_models_allowed(secrets: Mapping | None = None,
                          environ: Mapping[str, str] | None = None) -> bool:
    """Whether custom model ids and folders may load: the environment variable wins, then the
    secrets entry of the same name; on when neither is set (a local install)."""
    environ = os.environ if environ is None else environ
    if environ.get(ALLOW_CUSTOM_MODELS, "").strip():
        return flag(environ[ALLOW_CUSTOM_MODELS], ALLOW_CUSTOM_MODELS)
    if secrets is not None and ALLOW_CUSTOM_MODELS in secrets:
        return flag(secrets[ALLOW_CUSTOM_MODELS], ALLOW_CUSTOM_MODELS)
    return True


def check_model_allowed(name_or_path: str, allowed: bool) -> None:
    """Refuse anything but a registered model's key when custom models are switched off.

    The message is the same for every refused name, so it reveals nothing about what exists."""
    if allowed or name_or_path.strip() in MODEL_REGISTRY:
        return
    raise ModelNotAllowedError(
        "This deployment serves only its listed models; custom Hugging Face ids and folders are "
        f"switched off ({ALLOW_CUSTOM_MODELS}). Choose one of: {', '.join(MODEL_REGISTRY)}.")
