"""The offline explanations: numbers and rankings recomputed here from the result's own values."""

from __future__ import annotations

import pytest
import torch

from interp import explain as explain_module
from interp import patching_tasks as tasks
from interp.errors import InvalidOptionError
from interp.explain import Explanation, explain, explain_patching, md_escape, register_explainer
from interp.patching import MethodAgreement, PatchingResult, patch


def hand_result(values, clean=1.0, corrupted=0.0, direction="denoising", method="exact",
                metric="logit_diff", tokens=("<|endoftext|>", "x"), n_prompts=1, site="resid_pre"):
    values = torch.tensor(values, dtype=torch.float32)
    return PatchingResult(
        model_name="tiny", method=method, site=site, granularity="layer_pos",
        direction=direction, metric_name=metric, values=values,
        normalized=(values - corrupted) / (clean - corrupted), clean_value=clean,
        corrupted_value=corrupted, tokens=tokens, n_prompts=n_prompts)


def test_denoising_ranks_by_restored_gap_with_shares():
    # Effects are the values themselves (corrupted 0, clean 1); total |effect| = 1.4.
    result = hand_result([[0.0, 0.5], [0.8, 0.1]])
    explanation = explain_patching(result)
    top = explanation.facts["top"]
    assert [row["label"] for row in top] == ["L1 pos 0 '<|endoftext|>'", "L0 pos 1 'x'",
                                            "L1 pos 1 'x'"]
    assert [row["share"] for row in top] == pytest.approx([0.8 / 1.4, 0.5 / 1.4, 0.1 / 1.4])
    assert explanation.facts["top_share"] == pytest.approx(1.4 / 1.4)
    text = explanation.markdown
    assert "restores 80% of the gap" in text and "57% of the total effect" in text
    assert "**1**" in text and "**0**" in text
    assert "*sufficient*" in text and "single prompt" in text


def test_noising_counts_what_the_patch_removes():
    # Noising effect = clean - patched: [[1, 0.5], [0.2, 0.9]], total 2.6.
    result = hand_result([[0.0, 0.5], [0.8, 0.1]], direction="noising")
    explanation = explain_patching(result)
    top = explanation.facts["top"]
    assert top[0]["label"] == "L0 pos 0 '<|endoftext|>'"
    assert top[0]["share"] == pytest.approx(1.0 / 2.6)
    assert top[1]["label"] == "L1 pos 1 'x'" and top[1]["share"] == pytest.approx(0.9 / 2.6)
    assert "removes 100% of the gap" in explanation.markdown
    assert "*necessary*" in explanation.markdown


def test_kl_metric_is_oriented_towards_the_clean_value():
    # KL to clean: 0 is clean, 2 corrupted; patching down to 0.5 restores 1.5 of the 2.
    result = hand_result([[2.0, 1.0], [0.5, 2.0]], clean=0.0, corrupted=2.0, metric="kl_to_clean")
    top = explain_patching(result).facts["top"]
    assert top[0]["label"] == "L1 pos 0 '<|endoftext|>'"
    assert top[0]["effect"] == pytest.approx(1.5) and top[0]["share"] == pytest.approx(0.6)


def test_negative_effects_are_named():
    result = hand_result([[0.9, -0.3], [0.0, 0.0]])
    assert "L0 pos 1 'x' pushes the other way" in explain_patching(result).markdown


def test_tokens_are_escaped_for_markdown():
    result = hand_result([[0.0, 0.9]], tokens=("<|endoftext|>", "*$x_"))
    text = explain_patching(result).markdown
    assert md_escape("*$x_") == r"\*\$x\_"
    assert r"\*\$x\_" in text and "*$x_" not in text


def test_method_caveats_and_agreement():
    result = hand_result([[0.2, 0.7]], method="attribution", n_prompts=4, site="attn_out")
    agreement = MethodAgreement(pearson=0.95, spearman=0.8, worst=[("L0 pos 1 'x'", 0.7, 0.4)],
                                scale_ratio=0.9)
    explanation = explain_patching(result, agreement)
    text = explanation.markdown
    assert "first-order approximation" in text and "averaged over 4 prompts" in text
    assert "Residual-stream cells" not in text
    assert "agree closely" in text and "r = 0.95" in text and "0.7 exact vs 0.4" in text
    assert explanation.facts["pearson"] == 0.95


def test_tiny_gap_is_flagged():
    result = hand_result([[0.0, 0.0]], clean=0.30001, corrupted=0.3)
    assert "barely changes the metric" in explain_patching(result).markdown


def test_engine_result_top_component_and_shares(tiny_model):
    task = tasks.agreement_task(tiny_model, "The keys to the cabinet are on the table")
    inputs, metric = tasks.task_inputs(tiny_model, task)
    result = patch(tiny_model, inputs, metric, site="resid_pre", granularity="layer_pos")
    sign = 1.0 if result.clean_value >= result.corrupted_value else -1.0
    effects = sign * (result.values - result.corrupted_value)
    total = float(effects.abs().sum())
    order = torch.argsort(effects.abs().flatten(), descending=True)[:3]
    indices = [divmod(int(i), effects.shape[1]) for i in order]
    explanation = explain(result)
    assert explanation.facts["top"][0]["label"] == result.label(indices[0])
    assert md_escape(result.label(indices[0])) in explanation.markdown
    expected_shares = [float(effects[i].abs()) / total for i in indices]
    assert [row["share"] for row in explanation.facts["top"]] == pytest.approx(expected_shares,
                                                                               rel=1e-5)
    assert explanation.facts["top_share"] == pytest.approx(sum(expected_shares), rel=1e-5)
    every = explain_module.component_effects(result)
    assert sum(row.share for row in every) == pytest.approx(1.0)
    assert f"{result.clean_value:.4g}" in explanation.markdown


def test_registry_dispatches_refuses_duplicates_and_unknown_types():
    result = hand_result([[0.0, 0.5]])
    assert explain(result) == explain_patching(result)
    with pytest.raises(InvalidOptionError, match="PatchingResult"):
        explain(object())
    with pytest.raises(ValueError, match="already registered"):
        register_explainer(PatchingResult)(explain_patching)

    class OtherResult:
        pass

    try:
        register_explainer(OtherResult)(lambda result: Explanation("t", "m"))
        assert explain(OtherResult()).title == "t"
    finally:
        explain_module.EXPLAINERS.pop(OtherResult, None)
