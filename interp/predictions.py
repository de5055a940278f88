"""Next-token prediction: what the model expects after the prompt, with probabilities.

The probabilities are the softmax of the last position's logits; the top-k list is what the model
would most likely write next. Every analysis page explains some part of this distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.errors import InvalidOptionError
from interp.tokens import SCREEN_ONLY
from interp.validation import check_prompt


@dataclass(frozen=True)
class NextTokenPrediction:
    """Top-k next tokens after a prompt. Probabilities are over the whole vocabulary.

    `tokens` and `top_tokens` are for the screen (whitespace marked); exports write the raw
    `token_texts` and `top_texts` with the ids.
    """

    model_name: str
    prompt: str
    tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    token_ids: tuple[int, ...]
    top_ids: tuple[int, ...]
    top_tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    top_probs: tuple[float, ...]
    top_logits: tuple[float, ...]
    entropy_nats: float
    token_texts: tuple[str, ...] = ()
    top_texts: tuple[str, ...] = ()


def next_token_topk(model, prompt: str, k: int = 10) -> NextTokenPrediction:
    """The k most likely next tokens after `prompt` under `model` (a `LoadedModel`)."""
    if not 1 <= k <= model.info.d_vocab:
        raise InvalidOptionError(f"k must be between 1 and {model.info.d_vocab}; got {k}.")
    checked = check_prompt(prompt, model)
    logits = model.logits(checked.as_tensor())[0, -1].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    top = torch.topk(log_probs, k)
    entropy = float(-(log_probs.exp() * log_probs).sum())
    return NextTokenPrediction(
        model_name=model.name, prompt=prompt, tokens=checked.tokens, token_ids=checked.token_ids,
        top_ids=tuple(top.indices.tolist()),
        top_tokens=tuple(model.display_tokens(top.indices.tolist())),
        token_texts=tuple(model.token_texts(checked.token_ids)),
        top_texts=tuple(model.token_texts(top.indices.tolist())),
        top_probs=tuple(top.values.exp().tolist()),
        top_logits=tuple(logits[top.indices].tolist()), entropy_nats=entropy)
