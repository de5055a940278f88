"""Faithfulness curves against masked forward passes by hand, the randomisation sanity check on
a private copy, and rank correlations against pandas."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from interp.attribution import ATTRIBUTION_METHODS, AttributionTarget, attribute
from interp.attribution import faithfulness as trust
from interp.models import load_model

PROMPT = "The cat sat on the mat"
TARGET = AttributionTarget("token", token_id=262, contrast_id=None, label=" the")
IOI = "When Mary and John went to the store, John gave a drink to"


def hand_made(model, scores: list[float], prompt: str = PROMPT, target=TARGET):
    """A map with chosen scores, shaped like any method's result."""
    result = attribute(model, prompt, "occlusion", target=target)
    return dataclasses.replace(result, method="hand", scores=torch.tensor(scores))


def test_deletion_and_insertion_curves_equal_masked_forward_passes_by_hand(tiny_model):
    """Reference: the target logit with the chosen tokens replaced by end-of-text, by hand, and
    AOPC as the mean of those drops (Samek et al. 2017)."""
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    eos = tiny_model.tokenizer.eos_token_id
    order = [3, 1, 5, 2, 6, 4]
    scores = [0.0] * len(ids)
    for rank, position in enumerate(order):
        scores[position] = 10.0 - rank
    result = trust.faithfulness(tiny_model, PROMPT, hand_made(tiny_model, scores), n_random=3)

    def logit(masked: set[int]) -> float:
        row = [eos if p in masked else t for p, t in enumerate(ids)]
        return float(tiny_model.logits(torch.tensor([row]))[0, -1, 262])

    deletion = [logit(set(order[:k])) for k in range(len(order) + 1)]
    insertion = [logit(set(order[k:])) for k in range(len(order) + 1)]
    assert result.order == tuple(order)
    assert result.deletion == pytest.approx(deletion, abs=1e-4)
    assert result.insertion == pytest.approx(insertion, abs=1e-4)
    assert result.deletion_aopc == pytest.approx(
        sum(deletion[0] - v for v in deletion) / len(deletion), abs=1e-4)
    assert result.comprehensiveness[0.2] == pytest.approx(deletion[0] - deletion[2], abs=1e-4)
    assert result.sufficiency[0.5] == pytest.approx(deletion[0] - insertion[3], abs=1e-4)
    # Every random order starts at the prompt and ends with everything masked.
    assert result.random_deletion[0] == pytest.approx(deletion[0], abs=1e-4)
    assert result.random_deletion[-1] == pytest.approx(deletion[-1], abs=1e-4)


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


GRADIENT_METHODS = ("integrated_gradients", "gradient_x_input", "lrp")
ONE_TOKEN_CASES = {
    # The answer ' Mary' over ' John' depends on the indirect object's name (position 2).
    "ioi": (IOI, (" Mary", " John")),
    # ' Paris' depends on the landmark's name.
    "fact": ("The Eiffel Tower is located in the city of", " Paris"),
    # A held-out demo-corpus IOI prompt (ioi_prompts("test", 8)[2]), on which all three methods
    # rank the indirect object (' James', position 2) first (tests/test_attribution_ioi.py).
    "ioi_held_out": ("After James and Oliver went to the station, Oliver handed a coin to", None),
}
# Cases a method is measured to miss (strict xfail). The first demo model's gradient x input
# ranked the subject's second mention first on the IOI prompt (deletion AOPC 3.3 against 4.2
# for random orders); the second demo model (#20) beats random orders on every case.
KNOWN_MISSES: set[tuple[str, str]] = set()


@pytest.mark.slow  # one attribution and ~300 masked forward passes per case on the demo model
@pytest.mark.parametrize("case", list(ONE_TOKEN_CASES))
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_maps_beat_random_orders_where_one_token_decides(demo_model, method, case,
                                                                  request):
    """Reference: random token orders (the baseline), on demo-model prompts whose answer
    depends on one known token."""
    assert method in ATTRIBUTION_METHODS
    if (method, case) in KNOWN_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason="measured miss, see KNOWN_MISSES"))
    prompt, target = ONE_TOKEN_CASES[case]
    result = attribute(demo_model, prompt, method, target=target)
    scored = trust.faithfulness(demo_model, prompt, result, n_random=8)
    assert scored.deletion_aopc > scored.random_deletion_aopc


def test_sanity_check_randomises_a_private_copy_and_leaves_the_shared_model(demo_model):
    """Reference: the shared model's logits and hook census before and after."""
    tokens = demo_model.to_tokens(IOI)
    before = demo_model.logits(tokens)
    result = attribute(demo_model, IOI, "occlusion")
    check = trust.sanity_check(demo_model, IOI, result, n_layers=demo_model.info.n_layers)
    torch.testing.assert_close(demo_model.logits(tokens), before, rtol=0, atol=0)
    assert demo_model.active_hook_count() == 0
    assert not torch.allclose(check.randomised_scores, check.original_scores)
    assert check.spearman < trust.SANITY_THRESHOLD and not check.flagged


def test_a_map_that_ignores_the_weights_is_flagged(demo_model, monkeypatch):
    """Reference: a map returned unchanged by the randomised model has rank correlation 1."""
    result = attribute(demo_model, IOI, "occlusion")
    monkeypatch.setattr("interp.attribution.attribute", lambda *args, **kwargs: result)
    check = trust.sanity_check(demo_model, IOI, result, n_layers=1)
    assert check.spearman == pytest.approx(1.0) and check.flagged


def test_rank_correlations_match_pandas_spearman(tiny_model):
    """Reference: pandas' own Spearman correlation of the same columns (BOS left out)."""
    columns = {"a": [9.0, 1, 2, 3, 4, 5, 6], "b": [0.0, 6, 5, 4, 3, 2, 1],
               "c": [5.0, 3, 1, 2, 7, 0.5, 4]}
    maps = [dataclasses.replace(hand_made(tiny_model, v), method=k) for k, v in columns.items()]
    found = trust.rank_correlations(tiny_model, maps)
    expected = pd.DataFrame({k: v[1:] for k, v in columns.items()}).corr(method="spearman")
    torch.testing.assert_close(found.matrix, torch.tensor(expected.values, dtype=torch.float32))
