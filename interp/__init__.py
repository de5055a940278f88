"""interp: the computation behind the GPT-2 Interpretability Workbench, usable without Streamlit.

    from interp import load_model, next_token_topk
    model = load_model("demo")          # or "gpt2", a local folder, a Hugging Face id
    next_token_topk(model, "The Eiffel Tower is located in the city of")
"""

from interp.errors import InterpError, InvalidOptionError, InvalidPromptError, ModelUnavailableError
from interp.models import (
    MODEL_REGISTRY,
    LoadedModel,
    ModelInfo,
    ModelSpec,
    available_models,
    load_model,
)
from interp.predictions import NextTokenPrediction, next_token_topk
from interp.validation import CheckedPrompt, check_prompt

__all__ = [
    "MODEL_REGISTRY", "CheckedPrompt", "InterpError", "InvalidOptionError", "InvalidPromptError",
    "LoadedModel", "ModelInfo", "ModelSpec", "ModelUnavailableError", "NextTokenPrediction",
    "available_models", "check_prompt", "load_model", "next_token_topk",
]
