"""The attribution API: targets, the method registry, errors (no method maths here)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

from interp.attribution import (
    ATTRIBUTION_METHODS,
    AttributionTarget,
    attribute,
    prompt_token_ids,
    resolve_target,
    target_scalar,
    target_value_of,
)
from interp.errors import InvalidOptionError, InvalidPromptError

PROMPT = "The Eiffel Tower is in"
PARIS = 6342  # GPT-2's id of " Paris" (FIELD-NOTES)


@pytest.fixture(scope="module")
def hf_tiny(tiny_model_dir):
    """The same weights as `tiny_model`, run by Hugging Face directly (the reference)."""
    return GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()


def hf_last_logits(hf_model, ids):
    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0, -1]


def test_default_target_is_the_top_next_token(tiny_model, hf_tiny):
    """Reference: argmax of Hugging Face's own logits for the same weights."""
    ids = prompt_token_ids(tiny_model, PROMPT)
    target = resolve_target(tiny_model, ids, None)
    assert target.kind == "predicted"
    assert target.token_id == int(hf_last_logits(hf_tiny, ids).argmax())


def test_token_and_contrast_targets(tiny_model, hf_tiny):
    """Reference: GPT-2's published id of " Paris" and Hugging Face's logits."""
    ids = prompt_token_ids(tiny_model, PROMPT)
    assert resolve_target(tiny_model, ids, " Paris") == AttributionTarget("token", PARIS, None, "' Paris'")
    assert resolve_target(tiny_model, ids, PARIS).token_id == PARIS
    contrast = resolve_target(tiny_model, ids, (" Paris", 13))
    assert (contrast.kind, contrast.token_id, contrast.contrast_id) == ("contrast", PARIS, 13)
    assert contrast.label == "' Paris' - '.'"
    logits = hf_last_logits(hf_tiny, ids)
    assert target_value_of(tiny_model, ids, contrast) == pytest.approx(
        float(logits[PARIS] - logits[13]), abs=1e-4)
    batched = torch.stack([logits, 2 * logits])
    assert torch.allclose(target_scalar(batched, contrast),
                          torch.stack([logits[PARIS] - logits[13], 2 * (logits[PARIS] - logits[13])]))


def test_continuation_target_is_greedy_and_valued_per_step(tiny_model, hf_tiny):
    """Reference: Hugging Face's greedy `generate` and its logits on prompt + continuation."""
    ids = prompt_token_ids(tiny_model, PROMPT)
    target = resolve_target(tiny_model, ids, {"continuation": 3})
    generated = hf_tiny.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False,
                                 pad_token_id=0)[0, len(ids):].tolist()
    assert target.kind == "continuation" and list(target.continuation_ids) == generated
    assert resolve_target(tiny_model, ids, "continuation:3") == target
    full = list(ids) + generated
    with torch.no_grad():
        logits = hf_tiny(torch.tensor([full])).logits[0]
    expected = sum(float(logits[len(ids) - 1 + i, t]) for i, t in enumerate(generated))
    assert target_value_of(tiny_model, ids, target) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(InvalidOptionError, match="step"):
        target_scalar(logits, target)


@pytest.mark.parametrize("bad, match", [
    (" Eiffel Tower", "exactly one token"),
    (10**6, "outside the vocabulary"),
    ((PARIS, PARIS), "itself"),
    ((1, 2, 3), "pair"),
    ({"continuation": 0}, "between 1 and"),
    ({"steps": 2}, "continuation"),
    (1.5, "token id"),
])
def test_bad_targets_are_typed_errors(tiny_model, bad, match):
    ids = prompt_token_ids(tiny_model, PROMPT)
    with pytest.raises(InvalidOptionError, match=match):
        resolve_target(tiny_model, ids, bad)


def test_unknown_method_lists_the_registered_ones(tiny_model):
    with pytest.raises(InvalidOptionError) as error:
        attribute(tiny_model, PROMPT, "no_such_method")
    for name in ATTRIBUTION_METHODS:
        assert repr(name) in str(error.value)


def test_bad_prompts_are_typed_errors(tiny_model):
    with pytest.raises(InvalidPromptError):
        prompt_token_ids(tiny_model, "   ")
    with pytest.raises(InvalidPromptError, match="vocabulary"):
        prompt_token_ids(tiny_model, [0, 10**6])
    assert prompt_token_ids(tiny_model, torch.tensor([[1, 2]])) == (1, 2)
