"""Attribution patching equals a linear approximation computed here by hand, and is compared
fairly with exact patching.

The reference gradient comes from torch.autograd on a leaf tensor holding one cached corrupted
activation, swapped into a plain hooked forward pass, so it shares nothing with the library's
one-backward-for-all-sites implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from interp import patching as P
from interp.errors import InvalidOptionError
from tests.test_patching_engine import ioi_inputs, load_sharp_model


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    return load_sharp_model(tmp_path_factory)


def cached(model, tokens, name):
    store = {}

    def save(activation, hook):
        store["act"] = activation.detach().clone()
    with torch.no_grad(), model.hooked([(name, save)]) as bridge:
        bridge(tokens)
    return store["act"]


def logit_diff(metric, logits):
    rows = torch.arange(logits.shape[0])
    correct, wrong = torch.tensor(metric.correct_ids), torch.tensor(metric.wrong_ids)
    return (logits[rows, -1, correct] - logits[rows, -1, wrong]).mean()


def gradient_at(model, tokens, name, leaf, metric):
    """d metric / d activation, the activation at `name` replaced by the leaf tensor `leaf`."""
    leaf = leaf.clone().requires_grad_(True)
    with torch.enable_grad(), model.hooked([(name, lambda activation, hook: leaf)]) as bridge:
        value = logit_diff(metric, bridge(tokens))
        (gradient,) = torch.autograd.grad(value, leaf)
    return gradient


@pytest.mark.parametrize("site,granularity", [
    ("resid_pre", "layer_pos"), ("resid_pre", "layer"), ("attn_out", "layer_pos"),
    ("mlp_out", "layer"), ("z", "head"), ("z", "head_pos"), ("v", "head"), ("pattern", "head_pos"),
])
def test_values_equal_a_hand_written_linear_approximation(sharp_model, site, granularity):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.attribution_patch(sharp_model, inputs, metric, site=site, granularity=granularity)
    for layer in range(sharp_model.info.n_layers):
        name = (f"blocks.{layer}.attn.hook_{site}" if site in P.HEAD_SITES
                else f"blocks.{layer}.hook_{site}")
        clean = cached(sharp_model, inputs.clean_tokens, name)
        corrupted = cached(sharp_model, inputs.corrupted_tokens, name)
        gradient = gradient_at(sharp_model, inputs.corrupted_tokens, name, corrupted, metric)
        product = ((clean - corrupted) * gradient).sum(0)
        if site == "pattern":  # [head, dest, src] -> per head and destination
            expected = product.sum(-1)
        elif site in P.HEAD_SITES:  # [pos, head, d_head] -> [head, pos]
            expected = product.sum(-1).T
        else:  # [pos, d_model] -> per position
            expected = product.sum(-1)
        if granularity in ("layer", "head"):
            expected = expected.sum(-1)
        estimate = result.values[layer] - result.corrupted_value
        assert torch.allclose(estimate, expected, atol=1e-5, rtol=1e-4)
    assert result.method == "attribution"
    assert sharp_model.active_hook_count() == 0


def test_resid_mid_gradient_counts_the_residual_branch_and_the_mlp_branch(sharp_model):
    """resid_mid feeds both the MLP and the residual sum; the gradient is taken through both."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.attribution_patch(sharp_model, inputs, metric, site="resid_mid")
    bridge = sharp_model.bridge
    for layer in range(sharp_model.info.n_layers):
        name = f"blocks.{layer}.hook_resid_mid"
        clean = cached(sharp_model, inputs.clean_tokens, name)
        mid = cached(sharp_model, inputs.corrupted_tokens, name).requires_grad_(True)
        block = bridge.blocks[layer]
        with torch.enable_grad():
            hidden = mid + block.mlp(block.ln2(mid))
            for later in bridge.blocks[layer + 1:]:
                hidden = later(hidden)[0]
            value = logit_diff(metric, bridge.unembed(bridge.ln_final(hidden)))
            (gradient,) = torch.autograd.grad(value, mid)
        expected = ((clean - mid.detach()) * gradient).sum(0).sum(-1)
        assert torch.allclose(result.values[layer] - result.corrupted_value, expected, atol=1e-5)


def test_noising_takes_the_gradient_in_the_clean_run(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.attribution_patch(sharp_model, inputs, metric, site="resid_pre",
                                 direction="noising")
    name = "blocks.1.hook_resid_pre"
    clean = cached(sharp_model, inputs.clean_tokens, name)
    corrupted = cached(sharp_model, inputs.corrupted_tokens, name)
    gradient = gradient_at(sharp_model, inputs.clean_tokens, name, clean, metric)
    expected = ((corrupted - clean) * gradient).sum(0).sum(-1)
    assert torch.allclose(result.values[1] - result.clean_value, expected, atol=1e-5)


def test_attribution_approximates_exact_patching_but_not_perfectly(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    exact = P.patch(sharp_model, inputs, metric, site="z", granularity="head_pos")
    approx = P.attribution_patch(sharp_model, inputs, metric, site="z", granularity="head_pos")
    agreement = P.compare_methods(exact, approx, k=4)
    assert exact.clean_value == pytest.approx(approx.clean_value)
    assert exact.corrupted_value == pytest.approx(approx.corrupted_value)
    assert 0.5 < agreement.pearson < 0.99999

    a = exact.normalized.flatten().numpy()
    b = approx.normalized.flatten().numpy()
    assert agreement.pearson == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-6)
    # Cells equal up to 1e-5 of the map's largest |value| are ties (float rounding, not order):
    # pandas ranks the maps snapped to that grid.
    def snapped(x):
        step = 1e-5 * np.abs(x).max()
        return np.round(x / step) * step
    spearman = float(np.corrcoef(pd.Series(snapped(a)).rank(), pd.Series(snapped(b)).rank())[0, 1])
    assert agreement.spearman == pytest.approx(spearman, abs=1e-6)

    gaps = sorted(np.abs(a - b), reverse=True)
    assert len(agreement.worst) == 4
    assert [abs(e - x) for _, e, x in agreement.worst] == pytest.approx(gaps[:4], abs=1e-6)
    assert agreement.worst[0][0].startswith("L") and " H" in agreement.worst[0][0]


def hand_made_result(normalized: list[list[float]], method: str) -> P.PatchingResult:
    """A [layer, head] result whose normalized map is given (clean 1, corrupted 0, so values
    equal the normalized map)."""
    grid = torch.tensor(normalized, dtype=torch.float32)
    return P.PatchingResult(
        model_name="hand-made", method=method, site="z", granularity="head",
        direction="denoising", metric_name="logit_diff", values=grid.clone(), normalized=grid,
        clean_value=1.0, corrupted_value=0.0, tokens=("a", "b"), n_prompts=1)


def test_compare_methods_refuses_different_maps(sharp_model):
    """References: `np.corrcoef` for Pearson, `np.corrcoef` of pandas' average ranks for
    Spearman, and the gaps sorted here by hand for the worst components, on two different
    hand-made maps (a shared constant offset and unequal spreads make an uncentred or
    one-sided computation give other numbers)."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    heads = P.attribution_patch(sharp_model, inputs, metric, site="z", granularity="head")
    positions = P.attribution_patch(sharp_model, inputs, metric, site="resid_pre")
    with pytest.raises(InvalidOptionError, match="same site"):
        P.compare_methods(heads, positions)

    exact_map = [[5.0, 3.0, 9.0], [4.0, 4.0, 1.0]]
    approx_map = [[5.5, 2.0, 8.0], [7.0, 4.0, 3.0]]
    exact, approx = hand_made_result(exact_map, "exact"), hand_made_result(approx_map, "approx")
    agreement = P.compare_methods(exact, approx, k=3)

    a, b = np.array(exact_map).flatten(), np.array(approx_map).flatten()
    assert agreement.pearson == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-9)
    # Ranks by hand (ties share their average): a -> 5 2 6 3.5 3.5 1, b -> 4 1 6 5 3 2.
    ranks_a, ranks_b = [5, 2, 6, 3.5, 3.5, 1], [4, 1, 6, 5, 3, 2]
    assert list(pd.Series(a).rank()) == ranks_a and list(pd.Series(b).rank()) == ranks_b
    spearman = float(np.corrcoef(ranks_a, ranks_b)[0, 1])
    assert agreement.spearman == pytest.approx(spearman, abs=1e-9)
    assert agreement.pearson < 0.9 and abs(agreement.pearson - agreement.spearman) > 0.01
    # Gaps |a - b|: 0.5 1 1 3 0 2 -> the three largest are L1 H0 (3), L1 H2 (2), then the first
    # of the tied 1s in flat order, L0 H1.
    assert agreement.worst == [("L1 H0", 4.0, 7.0), ("L1 H2", 1.0, 3.0), ("L0 H1", 3.0, 2.0)]

    same = P.compare_methods(exact, exact)
    assert same.pearson == pytest.approx(1.0) and same.spearman == pytest.approx(1.0)


def test_spearman_ranks_ties_by_their_average():
    ranks = P.average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0]))
    assert ranks.tolist() == [3.5, 1.0, 3.5, 2.0]
