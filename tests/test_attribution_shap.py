"""SHAP over tokens: Exact against our own Shapley enumeration, efficiency of both explainers,
and no hook left on the shared model when shap fails midway."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interp.attribution import AttributionTarget, attribute
from interp.errors import InvalidOptionError

PROMPT = "The cat sat on the mat"  # BOS + 6 tokens


def value_with(model, token_ids, keep: set[int], replacement: int, target_id: int) -> float:
    """The target logit with every editable position outside `keep` replaced (plain forward)."""
    row = [t if (p == 0 or p in keep) else replacement for p, t in enumerate(token_ids)]
    return float(model.logits(torch.tensor([row]))[0, -1, target_id])


def shapley_by_enumeration(model, token_ids, replacement: int, target_id: int) -> list[float]:
    players = list(range(1, len(token_ids)))
    m = len(players)
    coalitions = [frozenset(s) for size in range(m + 1) for s in itertools.combinations(players, size)]
    rows = [[t if (p == 0 or p in s) else replacement for p, t in enumerate(token_ids)]
            for s in coalitions]
    logits = model.logits(torch.tensor(rows))[:, -1, target_id].tolist()
    values = dict(zip(coalitions, logits, strict=True))
    scores = []
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in itertools.combinations(others, size):
                total += weight * (values[frozenset(s) | {i}] - values[frozenset(s)])
        scores.append(total)
    return scores


@pytest.mark.slow  # shap compiles its Exact explainer with numba on first use (~15 s)
def test_exact_explainer_equals_shapley_values_by_enumeration(tiny_model):
    """Reference: Shapley's formula, summed here over all 2^6 coalitions of the six tokens."""
    token_ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    assert len(token_ids) <= 8
    replacement = tiny_model.tokenizer.eos_token_id
    result = attribute(tiny_model, PROMPT, "shap", explainer="exact")
    expected = shapley_by_enumeration(tiny_model, token_ids, replacement, result.target.token_id)
    assert result.scores[0] == 0.0
    torch.testing.assert_close(result.scores[1:], torch.tensor(expected), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("explainer", ["exact", "partition"])
def test_both_explainers_are_efficient(tiny_model, explainer):
    """Reference: the efficiency axiom; f(x) and f(all masked) from plain forward passes."""
    token_ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    replacement = tiny_model.tokenizer.eos_token_id
    target = AttributionTarget("token", token_id=262, contrast_id=None, label=" the")
    result = attribute(tiny_model, PROMPT, "shap", target=target, explainer=explainer)
    full = value_with(tiny_model, token_ids, set(range(len(token_ids))), replacement, 262)
    empty = value_with(tiny_model, token_ids, set(), replacement, 262)
    assert float(result.scores.sum()) == pytest.approx(full - empty, abs=1e-4)
    assert result.baseline_value == pytest.approx(empty, abs=1e-4)
    assert ("Owen" in " ".join(result.notes)) == (explainer == "partition")


def test_partition_is_efficient_for_each_generated_token(tiny_model):
    """Reference: efficiency per generated token; generated token i is explained on the prompt
    plus the tokens before it (all of them maskable), from plain forward passes."""
    target = AttributionTarget("continuation", token_id=None, contrast_id=None, label="",
                               continuation_ids=(262, 3797))
    result = attribute(tiny_model, PROMPT, "shap", target=target, max_evals=64)
    token_ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    eos, n = tiny_model.tokenizer.eos_token_id, len(token_ids)
    assert result.scores.shape == (2, n)
    full = tiny_model.logits(torch.tensor([token_ids + [262]]))[0]
    empty = tiny_model.logits(torch.tensor([[token_ids[0]] + [eos] * n]))[0]
    expected = torch.stack([full[n - 1, 262] - empty[n - 1, 262], full[n, 3797] - empty[n, 3797]])
    found = result.extras["full_scores"].nan_to_num(0.0).sum(-1)
    torch.testing.assert_close(found, expected, atol=1e-4, rtol=1e-4)


def test_exact_refuses_long_prompts_and_lists_the_way_out(tiny_model):
    with pytest.raises(InvalidOptionError, match="partition"):
        attribute(tiny_model, "one two three four five six seven eight nine ten eleven twelve "
                  "thirteen", "shap", explainer="exact")


def test_an_exception_inside_shap_leaves_no_hook_on_the_shared_model(tiny_model, monkeypatch):
    """Reference: the model's own hook census before and after."""
    import shap

    def failing_call(self, *args, **kwargs):
        tiny_model.bridge.original_model.transformer.h[0].register_forward_hook(
            lambda *a: None)
        raise RuntimeError("shap failed midway")

    monkeypatch.setattr(shap.explainers.Partition, "__call__", failing_call)
    assert tiny_model.active_hook_count() == 0
    with pytest.raises(RuntimeError, match="midway"):
        attribute(tiny_model, PROMPT, "shap")
    assert tiny_model.active_hook_count() == 0
