"""The attribution run's figures, CSV and explanation: tokens escaped, tables that re-read to
the run's own numbers, and an explanation that names the token every method puts first."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from interp.attribution.runs import run_attribution
from interp.explain import explain, md_escape
from interp.export import to_csv
from interp.figures import figure_for


@pytest.fixture(scope="module")
def run(tiny_model):
    return run_attribution(tiny_model, "a <b>bold</b> cat", methods=("occlusion", "lrp"),
                           perturb=True, flow=True)


def test_tokens_reach_the_figures_escaped(run):
    """Reference: html.escape of the prompt's '<' tokens, by hand: '&lt;'."""
    assert any("<" in token for token in run.tokens)
    for view in ("methods", "flow"):
        traces = figure_for(run, view=view).figure.to_plotly_json()["data"]
        shown = [str(label) for trace in traces
                 for field in ("x", "text") for label in (trace.get(field) or [])]
        assert not any("<" in label for label in shown)
        assert any("&lt;" in label for label in shown)


def test_scores_csv_rereads_to_each_methods_scores(run):
    """Reference: the results' own score tensors, read back from the CSV text."""
    rows = list(csv.reader(io.StringIO(to_csv(run, view="scores").decode())))
    assert rows[0] == ["position", "token", "occlusion", "lrp"]
    values = torch.tensor([[float(v) for v in row[2:]] for row in rows[1:]])
    torch.testing.assert_close(values[:, 0], run.results[0].scores)
    torch.testing.assert_close(values[:, 1], run.results[1].scores)
    flow_rows = list(csv.reader(io.StringIO(to_csv(run.flow).decode())))
    assert len(flow_rows) == 1 + 3 * run.flow.n_layers + 1


def test_the_explanation_names_the_first_token_of_each_method(run):
    """Reference: each result's own ranking (its largest score, BOS left out)."""
    text = explain(run).markdown
    for result in run.results:
        first = result.tokens[result.ranking()[0]]
        line = next(line for line in text.splitlines() if line.startswith(f"- `{result.method}`:"))
        assert line.split(": ", 1)[1].startswith(md_escape(first) + " (")
    assert "Which to trust here" in text
