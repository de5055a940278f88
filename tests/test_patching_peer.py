"""Our patching engine equals TransformerLens' own `transformer_lens.patching` on the same bridge.

TransformerLens runs one full forward pass per patch with a hook; ours batches patches and
starts at the patched layer. Both read the same tiny model and prompt pairs, and TL's
patching_metric computes our metric from its logits, so the maps must agree within 1e-4 of
their range.
"""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tl_patching

from interp import patching as P
from tests.test_patching_engine import ioi_inputs, load_sharp_model

TOLERANCE_OF_RANGE = 1e-4


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    return load_sharp_model(tmp_path_factory)


def tl_metric(metric: P.PatchingMetric, clean_logits: torch.Tensor):
    """Our metric, computed from the full logits TransformerLens hands to its patching_metric."""
    rows = torch.arange(len(metric.correct_ids))
    correct = torch.tensor(metric.correct_ids)
    clean_log_probs = torch.log_softmax(clean_logits[:, -1], dim=-1)

    def score(logits):
        last = logits[:, -1]
        if metric.name == "logit_diff":
            return (last[rows, correct] - last[rows, torch.tensor(metric.wrong_ids)]).mean()
        log_probs = torch.log_softmax(last, dim=-1)
        if metric.name == "correct_prob":
            return log_probs[rows, correct].exp().mean()
        return (clean_log_probs.exp() * (clean_log_probs - log_probs)).sum(-1).mean()
    return score


def transformer_lens_map(model, inputs, metric, function, direction="denoising"):
    """TL's sweep: denoising patches the clean cache into the corrupted tokens' run."""
    receiving, source = inputs.corrupted_tokens, inputs.clean_tokens
    if direction == "noising":
        receiving, source = source, receiving
    bridge = model.bridge
    with torch.no_grad():
        clean_logits = bridge(inputs.clean_tokens)
        _, source_cache = bridge.run_with_cache(source)
        return function(bridge, receiving, source_cache, tl_metric(metric, clean_logits))


def assert_same_map(ours: torch.Tensor, theirs: torch.Tensor):
    assert ours.shape == theirs.shape
    value_range = float(theirs.max() - theirs.min())
    assert value_range > 1e-2  # the patches do move the metric, so agreement means something
    assert float((ours - theirs).abs().max()) <= TOLERANCE_OF_RANGE * value_range


@pytest.mark.parametrize("site,granularity,function", [
    ("resid_pre", "layer_pos", tl_patching.get_act_patch_resid_pre),
    # TL's setter edits hook_resid_mid (ln2's input) in place: on a bridge that changes the
    # residual stream that flows on, as ours does.
    ("resid_mid", "layer_pos", tl_patching.get_act_patch_resid_mid),
    ("attn_out", "layer_pos", tl_patching.get_act_patch_attn_out),
    ("mlp_out", "layer_pos", tl_patching.get_act_patch_mlp_out),
    ("z", "head", tl_patching.get_act_patch_attn_head_out_all_pos),
    ("q", "head", tl_patching.get_act_patch_attn_head_q_all_pos),
    ("k", "head", tl_patching.get_act_patch_attn_head_k_all_pos),
    ("v", "head", tl_patching.get_act_patch_attn_head_v_all_pos),
    ("pattern", "head", tl_patching.get_act_patch_attn_head_pattern_all_pos),
    pytest.param("pattern", "head_pos", tl_patching.get_act_patch_attn_head_pattern_by_pos,
                 marks=pytest.mark.slow),  # TL: one forward pass for each of 120 patches
])
def test_denoising_equals_transformer_lens(sharp_model, site, granularity, function):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    ours = P.patch(sharp_model, inputs, metric, site=site, granularity=granularity)
    assert_same_map(ours.values, transformer_lens_map(sharp_model, inputs, metric, function))
    assert sharp_model.active_hook_count() == 0


@pytest.mark.slow  # TL: one forward pass for each of 120 patches
@pytest.mark.parametrize("site,function", [
    ("z", tl_patching.get_act_patch_attn_head_out_by_pos),
    ("q", tl_patching.get_act_patch_attn_head_q_by_pos),
    ("k", tl_patching.get_act_patch_attn_head_k_by_pos),
    ("v", tl_patching.get_act_patch_attn_head_v_by_pos),
])
def test_heads_by_position_equal_transformer_lens(sharp_model, site, function):
    """TL lays the by-position head sweep out [layer, pos, head]; ours is [layer, head, pos]."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    ours = P.patch(sharp_model, inputs, metric, site=site, granularity="head_pos")
    theirs = transformer_lens_map(sharp_model, inputs, metric, function)
    assert_same_map(ours.values, theirs.permute(0, 2, 1))


@pytest.mark.parametrize("metric_name", ["correct_prob", "kl_to_clean"])
def test_other_metrics_equal_transformer_lens(sharp_model, metric_name):
    inputs, _, correct, _ = ioi_inputs(sharp_model)
    metric = P.PatchingMetric(metric_name, tuple(correct))
    ours = P.patch(sharp_model, inputs, metric, site="resid_pre")
    theirs = transformer_lens_map(sharp_model, inputs, metric, tl_patching.get_act_patch_resid_pre)
    value_range = float(theirs.max() - theirs.min())
    assert value_range > 0
    assert float((ours.values - theirs).abs().max()) <= TOLERANCE_OF_RANGE * value_range


@pytest.mark.parametrize("site,granularity,function", [
    ("resid_pre", "layer_pos", tl_patching.get_act_patch_resid_pre),
    ("z", "head", tl_patching.get_act_patch_attn_head_out_all_pos),
])
def test_noising_equals_transformer_lens_with_the_runs_swapped(sharp_model, site, granularity,
                                                               function):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    ours = P.patch(sharp_model, inputs, metric, site=site, granularity=granularity,
                   direction="noising")
    theirs = transformer_lens_map(sharp_model, inputs, metric, function, direction="noising")
    assert_same_map(ours.values, theirs)
