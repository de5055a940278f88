"""One effect per direction (0 = none, 1 = full) for colour, ranking, captions and text."""

from __future__ import annotations

import pytest
import torch

from interp.explain import explain_patching
from interp.figures import patching as patching_figures
from interp.figures.patching import heatmap, heatmap_caption
from interp.patching import PatchingResult
from interp.patching.sweeps import PatchingRun, SweepOutcome, ranked_components


def head_result(values, clean, corrupted, direction="noising", metric="logit_diff"):
    values = torch.tensor(values, dtype=torch.float64)
    return PatchingResult(
        model_name="tiny", method="exact", site="z", granularity="head", direction=direction,
        metric_name=metric, values=values,
        normalized=(values - corrupted) / (clean - corrupted), clean_value=clean,
        corrupted_value=corrupted, tokens=("<|endoftext|>", "x"), n_prompts=1)


def test_noising_ranks_the_destroying_head_first_everywhere():
    """Reference, by hand: clean logit diff 4, corrupted 0. Noising L1 H0 drops the metric to 0
    (destroys the whole answer: effect 1); the other heads leave it at 4 (effect 0), so their
    normalized score is 1 and must not rank them first."""
    result = head_result([[4.0, 4.0], [0.0, 4.0]], clean=4.0, corrupted=0.0)
    assert result.effect.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    run = PatchingRun(task=None, metric="logit_diff", direction="noising",
                      sweeps=(SweepOutcome("heads", result),))
    table = ranked_components(run, threshold=0.5)
    assert [(row[1], row[2]) for row in table.rows] == [("L1 H0", 1.0)]
    caption = heatmap_caption(result)
    assert "destroys the clean answer fully" in caption and "0 = no effect" in caption
    assert "keeps" not in caption
    assert heatmap(result).data[0].z[1][0] == pytest.approx(1.0)
    explanation = explain_patching(result)
    assert explanation.facts["top"][0]["label"] == "L1 H0"
    assert "1. L1 H0: removes 100% of the gap" in explanation.markdown


def test_a_wrong_way_corruption_is_noted_and_its_colours_clamped():
    """Reference, by hand: clean 1, corrupted 2 (the clean run is worse: gap -1). A patched value
    of -13 gives normalized (-13 - 2) / (1 - 2) = 15; the colour scale stops at COLOUR_LIMIT but
    hover (z) keeps 15. A KL metric, whose clean value is 0 by design, is not flagged."""
    result = head_result([[-13.0, 2.0], [1.0, 1.5]], clean=1.0, corrupted=2.0,
                         direction="denoising")
    assert result.points_wrong_way
    assert "wrong way" in result.notes[0] and "Swap" in result.notes[0]
    trace = heatmap(result).data[0]
    limit = patching_figures.COLOUR_LIMIT
    assert 1 <= limit < 15 and (trace.zmin, trace.zmax) == (-limit, limit)
    assert trace.z[0][0] == pytest.approx(15.0)
    kl = head_result([[0.5, 1.0], [2.0, 0.0]], clean=0.0, corrupted=2.0, metric="kl_to_clean")
    assert kl.notes == () and not kl.points_wrong_way
    right_way = head_result([[0.0, 0.5], [1.0, 0.2]], clean=1.0, corrupted=0.0)
    assert right_way.notes == ()
    assert heatmap(right_way).data[0].zmax == pytest.approx(1.0)


def test_a_tiny_estimate_that_correlates_is_not_reported_as_agreeing():
    """Reference, by hand: the estimate is the exact map times 1e-5 plus a small wobble, so
    Pearson r is near 1 (checked with numpy) but the ratio of norms is about 1e-5; the baselines
    (clean 0.97, corrupted 0.001) are saturated probabilities."""
    import numpy as np

    from interp.explain import agreement_lines
    from interp.patching import compare_methods
    exact_map = [[0.97, 0.02], [0.5, 0.1]]
    approx_map = [[0.97e-5, 0.03e-5], [0.45e-5, 0.1e-5]]
    exact = head_result([[0.001 + 0.969 * v for v in row] for row in exact_map], clean=0.97,
                        corrupted=0.001, direction="denoising", metric="correct_prob")
    approx = head_result([[0.001 + 0.969 * v for v in row] for row in approx_map], clean=0.97,
                         corrupted=0.001, direction="denoising", metric="correct_prob")
    agreement = compare_methods(exact, approx)
    assert float(np.corrcoef(np.ravel(exact_map), np.ravel(approx_map))[0, 1]) > 0.99
    assert agreement.pearson > 0.99
    assert agreement.scale_ratio == pytest.approx(
        np.linalg.norm(approx_map) / np.linalg.norm(exact_map), rel=1e-6)
    assert not agreement.agrees
    text = " ".join(agreement_lines(agreement))
    assert "does **not** agree" in text and "agree closely" not in text
    assert "saturated" in text and "logit difference" in text


def expected_ioi_axis(model, task):
    """The hand reference for IOI axes: find each prompt's names by token id (one token each,
    with a leading space), assign IO/S1 by which comes first and S2 to the repeat."""
    from interp.tokens import axis_labels
    n = task.n_tokens
    roles = [[] for _ in range(n)]
    for ids, io, s in zip(task.clean_token_ids, task.correct_answers, task.wrong_answers,
                          strict=True):
        io_id, s_id = model.token_ids(io)[0], model.token_ids(s)[0]
        named = [(p, "IO" if t == io_id else "S") for p, t in enumerate(ids) if t in (io_id, s_id)]
        for index, (position, who) in enumerate(named):
            role = "S2" if index == 2 else ("IO" if who == "IO" else "S1")
            if role not in roles[position]:
                roles[position].append(role)
    roles[n - 1].append("END")
    tokens = model.display_tokens(list(task.clean_token_ids[0]))
    return axis_labels(["/".join(r) or token for r, token in zip(roles, tokens, strict=True)])


def test_ioi_axes_name_roles_when_prompts_are_averaged(tiny_model):
    """Reference: `expected_ioi_axis`, positions found by token id (not by the task's regex);
    a single prompt keeps its own tokens (the model's display tokens)."""
    from interp.figures.patching import token_axis
    from interp.patching.sweeps import run_sweeps
    from interp.patching_tasks import ioi_task
    from interp.tokens import axis_labels
    task = ioi_task(tiny_model, n_prompts=4, order="both")
    run = run_sweeps(tiny_model, task, ["MLP output (mlp_out)"], attribution=True)
    expected = [label for label in expected_ioi_axis(tiny_model, task)]
    assert any("IO/S1" in label for label in expected) and any("S2" in e for e in expected)
    for result in (run.sweeps[0].exact, run.sweeps[0].approx):
        assert list(heatmap(result).data[0].x) == token_axis(result.tokens)
        assert axis_labels(result.tokens) == expected

    single = ioi_task(tiny_model, n_prompts=1)
    run = run_sweeps(tiny_model, single, ["MLP output (mlp_out)"], attribution=False)
    tokens = tiny_model.display_tokens(list(single.clean_token_ids[0]))
    assert run.sweeps[0].exact.tokens == tuple(tokens)
