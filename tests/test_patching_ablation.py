"""Ablation (mean, zero, resample) of attention heads, against references computed here.

References: zero-ablating every head of a layer leaves only W_O's bias in its attention output
(a hook on hook_attn_out written here); the means are recomputed from z cached by a plain hook;
resampling from the prompts themselves changes nothing (an invariant).
"""

from __future__ import annotations

import pytest
import torch

from interp import patching as P
from interp.errors import InvalidOptionError
from tests.test_patching_engine import ioi_inputs, load_sharp_model


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    return load_sharp_model(tmp_path_factory)


def logit_diff(metric, logits):
    rows = torch.arange(logits.shape[0])
    correct, wrong = torch.tensor(metric.correct_ids), torch.tensor(metric.wrong_ids)
    return float((logits[rows, -1, correct] - logits[rows, -1, wrong]).mean())


def test_zero_ablating_a_whole_layer_leaves_only_the_output_bias(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    tokens = inputs.clean_tokens
    layer, n_heads = 1, sharp_model.info.n_heads
    result = P.ablate(sharp_model, tokens, metric, [(layer, h) for h in range(n_heads)], "zero")
    bias = sharp_model.bridge.blocks[layer].attn.b_O

    def bias_only(attn_out, hook):
        attn_out = attn_out.clone()
        attn_out[:, 1:] = bias
        return attn_out
    with torch.no_grad():
        with sharp_model.hooked() as bridge:
            clean = logit_diff(metric, bridge(tokens))
        with sharp_model.hooked([(f"blocks.{layer}.hook_attn_out", bias_only)]) as bridge:
            expected = logit_diff(metric, bridge(tokens))
    assert abs(expected - clean) > 1e-2
    assert result.clean_value == pytest.approx(clean, abs=1e-5)
    assert result.ablated_value == pytest.approx(expected, abs=1e-5)
    assert result.fraction_of_clean == pytest.approx(expected / clean, rel=1e-4)


def test_head_means_average_z_over_the_positions_after_bos(sharp_model):
    inputs, _, _, _ = ioi_inputs(sharp_model)
    tokens = inputs.clean_tokens
    cached = {}

    def keep(z, hook):
        cached[int(hook.name.split(".")[1])] = z.detach().clone()
    layers = range(sharp_model.info.n_layers)
    with torch.no_grad(), sharp_model.hooked([(f"blocks.{layer}.attn.hook_z", keep)
                                              for layer in layers]) as bridge:
        bridge(tokens)
    expected = torch.stack([cached[layer][:, 1:].mean(dim=(0, 1)) for layer in layers])
    assert torch.allclose(P.head_means(sharp_model, tokens), expected, atol=1e-6)
    # right padding past each prompt's length is left out
    lengths = torch.tensor([tokens.shape[1], tokens.shape[1] - 3])
    padded_means = P.head_means(sharp_model, tokens, lengths)
    kept = torch.cat([cached[0][0, 1:], cached[0][1, 1:-3]])
    assert torch.allclose(padded_means[0], kept.mean(0), atol=1e-6)


def test_mean_ablation_uses_the_given_means_and_resampling_itself_changes_nothing(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    tokens, heads = inputs.clean_tokens, [(0, 1), (1, 2)]
    means = P.head_means(sharp_model, inputs.corrupted_tokens)
    with_means = P.ablate(sharp_model, tokens, metric, heads, "mean", means=means)
    with torch.no_grad(), sharp_model.hooked(P.ablation_hooks(heads, "mean", means)) as bridge:
        assert with_means.ablated_value == pytest.approx(logit_diff(metric, bridge(tokens)), abs=1e-5)
    itself = P.ablate(sharp_model, tokens, metric, heads, "resample", resample_tokens=tokens)
    assert itself.ablated_value == pytest.approx(itself.clean_value, abs=1e-5)
    other = P.ablate(sharp_model, tokens, metric, heads, "resample",
                     resample_tokens=inputs.corrupted_tokens)
    assert abs(other.ablated_value - other.clean_value) > 1e-3
    assert sharp_model.active_hook_count() == 0


def test_bad_ablations_are_refused_listing_the_choices(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    with pytest.raises(InvalidOptionError, match="Valid choices: 'mean', 'zero', 'resample'"):
        P.ablate(sharp_model, inputs.clean_tokens, metric, [(0, 0)], "gaussian")
    with pytest.raises(InvalidOptionError, match="don't exist"):
        P.ablate(sharp_model, inputs.clean_tokens, metric, [(9, 0)])
    with pytest.raises(InvalidOptionError, match="same shape"):
        P.ablate(sharp_model, inputs.clean_tokens, metric, [(0, 0)], "resample")
