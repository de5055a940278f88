"""One set of patched runs scored by several metrics equals one sweep per metric."""

import pytest
import torch

from interp import patching_tasks as tasks
from interp.patching import correct_prob_metric, kl_metric, patch, patch_metrics
from interp.patching.sweeps import DEFAULT_SWEEPS, run_sweeps


@pytest.mark.parametrize("site, granularity, direction", [
    ("resid_pre", "layer_pos", "denoising"), ("z", "head", "noising"), ("q", "head", "denoising")])
def test_each_metric_equals_its_own_sweep(tiny_model, site, granularity, direction):
    """Reference: `patch` run once per metric (independent passes)."""
    task = tasks.ioi_task(tiny_model, n_prompts=3, seed=1)
    inputs, logit_diff = tasks.task_inputs(tiny_model, task, "logit_diff")
    metrics = (logit_diff, correct_prob_metric(task.correct_ids), kl_metric(task.correct_ids))
    together = patch_metrics(tiny_model, inputs, metrics, site=site, granularity=granularity,
                             direction=direction)
    for metric, result in zip(metrics, together, strict=True):
        alone = patch(tiny_model, inputs, metric, site=site, granularity=granularity,
                      direction=direction)
        assert result.metric_name == metric.name
        torch.testing.assert_close(result.values, alone.values, atol=1e-5, rtol=1e-5)
        assert result.clean_value == pytest.approx(alone.clean_value, abs=1e-6)
        assert result.corrupted_value == pytest.approx(alone.corrupted_value, abs=1e-6)


def test_shared_verb_curves_equal_their_own_sweeps(tiny_model):
    """Reference: `agreement_verb_curves` alone (its own sweep) against the curves a denoising
    run with the resid_pre sweep shares with that sweep."""
    task = tasks.agreement_task(tiny_model)
    run = run_sweeps(tiny_model, task, list(DEFAULT_SWEEPS), attribution=False)
    alone = tasks.agreement_verb_curves(tiny_model, task)
    torch.testing.assert_close(run.curves.correct_prob, alone.correct_prob, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(run.curves.wrong_prob, alone.wrong_prob, atol=1e-6, rtol=1e-5)
    assert run.curves.clean_probs == pytest.approx(alone.clean_probs)
    noised = run_sweeps(tiny_model, task, list(DEFAULT_SWEEPS[:1]), direction="noising",
                        attribution=False)
    torch.testing.assert_close(noised.curves.correct_prob, alone.correct_prob, atol=1e-6,
                               rtol=1e-5)


def test_hooked_engine_scores_several_metrics_too(tiny_model, monkeypatch):
    """Reference: the staircase engine's `patch` per metric; the hooked engine (forced here, as
    on a model that failed its self-check) must give the same values from one set of runs."""
    from interp.patching import exact

    task = tasks.ioi_task(tiny_model, n_prompts=2, seed=2)
    inputs, logit_diff = tasks.task_inputs(tiny_model, task, "logit_diff")
    metrics = (logit_diff, correct_prob_metric(task.correct_ids))
    expected = [patch(tiny_model, inputs, m, site="attn_out").values for m in metrics]
    monkeypatch.setattr(exact, "engine_for", lambda model: ("hooked", "forced in a test"))
    together = patch_metrics(tiny_model, inputs, metrics, site="attn_out")
    assert together[0].options["engine"] == "hooked"
    for result, values in zip(together, expected, strict=True):
        torch.testing.assert_close(result.values, values, atol=1e-5, rtol=1e-5)


def test_rank_correlation_ignores_rounding_noise():
    """Hand-built: cells equal up to float noise rank as ties, so noise of 1e-9 (what another
    thread count's GEMM rounding leaves) cannot reorder them; distinct cells keep their order."""
    from interp.patching.statistics import average_ranks, rounding_ties

    values = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    noisy = values + torch.tensor([3e-9, -2e-9, 1e-9, 0.0, 0.0], dtype=torch.float64)
    expected = torch.tensor([2.0, 2.0, 2.0, 4.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(average_ranks(noisy, rounding_ties(noisy)), expected)
    torch.testing.assert_close(average_ranks(values), expected)
