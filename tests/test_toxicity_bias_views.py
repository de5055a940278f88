"""Figures, CSV files and explanations of the toxicity, bias and confidence results, on results
built by hand (no model): user text is escaped, and the files hold the hand-set numbers."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from interp import behaviour, bias, export, toxicity
from interp.explain import explain
from interp.figures import figure_for

USER_TEXT = "<b>*she*</b>"


def hand_probe() -> bias.TemplateProbeResult:
    probs = np.array([[[0.1], [0.3]], [[0.2], [0.4]]])  # 2 templates, 2 groups, 1 target
    comparisons = bias.compare_groups(probs, (USER_TEXT, "he"), ("nurse",), 200, 0)
    return bias.TemplateProbeResult(
        model_name="hand", templates=("T1 {group}", "T2 {group}"), groups=(USER_TEXT, "he"),
        targets=("nurse",), scored="target", log_probs=np.log(probs),
        n_tokens=np.ones((2, 1), dtype=int), comparisons=comparisons, n_resamples=200, seed=0)


def test_user_text_is_escaped_in_figures_captions_and_explanations():
    probe = hand_probe()
    shown = figure_for(probe)
    assert USER_TEXT not in shown.caption and r"\*she\*" in shown.caption
    assert all("<b>" not in trace.name for trace in shown.figure.data)
    assert "&lt;b&gt;" in shown.figure.data[0].name
    assert USER_TEXT not in explain(probe).markdown


def test_the_probe_csv_holds_every_cell_and_the_comparison():
    """Reference: the hand-set probabilities; the difference (0.3 - 0.1 + 0.4 - 0.2) / 2 = 0.2."""
    rows = list(csv.reader(io.StringIO(export.to_csv(hand_probe()).decode())))
    assert rows[0] == ["template", "group", "target", "log_prob", "prob", "n_tokens"]
    np.testing.assert_allclose([float(r[4]) for r in rows[1:5]], [0.1, 0.3, 0.2, 0.4])
    assert rows[5][:3] == ["(all templates)", "he", "nurse"]
    assert float(rows[5][4]) == pytest.approx(0.2)


def test_the_continuations_csv_has_a_row_per_seed():
    """Reference: the hand-set scores and seeds 5, 6."""
    scores = toxicity.ToxicityScores(texts=(" one", USER_TEXT), categories=("toxicity", "insult"),
                                     scores=np.array([[0.1, 0.2], [0.9, 0.8]]), classifier="hand")
    result = toxicity.ContinuationsToxicity(
        model_name="hand", prompt="p", sampling=toxicity.SamplingOptions(2, 1.0, 1.0, 5, 5),
        scores=scores, threshold=0.5)
    rows = list(csv.reader(io.StringIO(export.to_csv(result).decode())))
    assert rows == [["seed", "continuation", "toxicity", "insult"], ["5", " one", "0.1", "0.2"],
                    ["6", USER_TEXT, "0.9", "0.8"]]
    assert "50%" in figure_for(result).caption  # one of two above 0.5, in both categories
    assert explain(result).facts["categories"]["toxicity"]["share_above"] == 0.5


def test_the_confidence_csv_marks_generated_and_low_confidence_tokens():
    trace = behaviour.ConfidenceTrace(
        model_name="hand", text="ab", tokens=("a", "b"), token_ids=(1, 2),
        entropy=np.array([1.0, 2.0]), top1_prob=np.array([0.9, 0.1]), top1_tokens=("a", "c"),
        token_prob=np.array([0.9, 0.05]), prompt_tokens=1, threshold=0.3)
    rows = list(csv.reader(io.StringIO(export.to_csv(trace).decode())))
    assert [r[2] for r in rows[1:]] == ["False", "True"]
    assert [r[-1] for r in rows[1:]] == ["False", "True"]
    assert "1 run(s)" in figure_for(trace).caption
