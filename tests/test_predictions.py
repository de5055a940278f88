"""Next-token top-k against a softmax computed independently from Hugging Face's logits."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2LMHeadModel

from interp import InvalidOptionError, InvalidPromptError, NextTokenPrediction, next_token_topk
from interp.random_models import gpt2_tokenizer


def test_top_k_matches_hugging_face_softmax(tiny_model, tiny_model_dir):
    prompt = "The Eiffel Tower is located in the city of"
    result = next_token_topk(tiny_model, prompt, k=7)
    peer = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    ids = [50256, *gpt2_tokenizer()(prompt).input_ids]
    with torch.no_grad():
        logits = peer(torch.tensor([ids])).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    expected = torch.topk(probs, 7)
    assert list(result.top_ids) == expected.indices.tolist()
    assert result.top_probs == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert result.entropy_nats == pytest.approx(float(-(probs * probs.log()).sum()), abs=1e-5)
    assert list(result.top_probs) == sorted(result.top_probs, reverse=True)
    assert result.token_ids == tuple(ids)


def test_entropy_is_at_most_log_vocab(tiny_model):
    result = next_token_topk(tiny_model, "Hello", k=3)
    assert 0 < result.entropy_nats <= math.log(tiny_model.info.d_vocab) + 1e-9


@pytest.mark.parametrize("k", [0, -1, 50258])
def test_bad_k_is_refused(tiny_model, k):
    with pytest.raises(InvalidOptionError):
        next_token_topk(tiny_model, "Hello", k=k)


def test_bad_prompt_is_refused_before_running(tiny_model):
    with pytest.raises(InvalidPromptError):
        next_token_topk(tiny_model, "", k=3)
    assert tiny_model.active_hook_count() == 0


def test_every_bar_of_the_top_k_chart_is_labelled_with_its_probability():
    """Hand-made prediction: the labels are the probabilities written by hand, top bar first
    (Plotly draws the first bar at the bottom), so a tiny bar still reads."""
    from interp.figures.prediction import top_k_bars

    prediction = NextTokenPrediction(
        model_name="hand", prompt="x", tokens=("x",), token_ids=(0,), top_tokens=(" a", " b", " c"),
        top_ids=(1, 2, 3), top_probs=(0.9, 0.0004, 0.05), top_logits=(3.0, -4.0, 0.1),
        entropy_nats=0.4)
    bars = top_k_bars(prediction).data[0]
    assert list(bars.text) == ["5.0%", "0.04%", "90.0%"]
