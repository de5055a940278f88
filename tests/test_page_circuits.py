"""The circuits page on the demo model: circuit selection by top-n edges or by score threshold,
each re-measured."""

from __future__ import annotations

from pages.kit import PAGES
from tests.test_pages_apptest import open_page, problems, run_main_action

CIRCUITS = next(entry for entry in PAGES if entry.url_path == "circuits")


def run_page(**state):
    app = run_main_action(open_page(CIRCUITS, **state), CIRCUITS)
    assert not problems(app), problems(app)
    return app


def metric(app, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def edges_caption(app) -> tuple[int, int]:
    """(kept, total) from the caption "K of N edges kept"."""
    text = next(c.value for c in app.caption if " edges kept." in c.value)
    kept, _, total, *_ = text.split()
    return int(kept), int(total)


def test_top_n_keeps_at_most_n_edges_and_the_threshold_radio_switches_inputs():
    app = run_page(**{"circuits.n_edges": 5})
    kept, total = edges_caption(app)
    assert 0 < kept <= 5 < total  # dead-edge pruning can only drop edges
    assert int(metric(app, "Edges kept")) == kept
    assert any("direct effect on" in c.value for c in app.caption)  # the component table
    assert not [n for n in app.number_input if n.label.startswith("Score threshold")]
    app.radio(key="circuits.select_by.widget").set_value("threshold").run()
    assert not problems(app), problems(app)
    assert [n for n in app.number_input if n.label.startswith("Score threshold")]
    assert not [s for s in app.slider if s.label == "Edges in the circuit"]


def test_threshold_zero_keeps_the_whole_model_and_one_above_every_score_keeps_nothing():
    # Invariants of F = (m(C) - m(empty)) / (m(M) - m(empty)): C = M gives 1, C = empty gives 0.
    app = run_page(**{"circuits.select_by": "threshold", "circuits.threshold": 0.0})
    # Dead edges (on no path to the logits) are pruned even here; they don't change F.
    assert edges_caption(app)[0] > 0
    assert float(metric(app, "F (held-out)")) == 1.0
    app.number_input(key="circuits.threshold.widget").set_value(1e9).run()
    assert not problems(app), problems(app)
    assert edges_caption(app)[0] == 0
    assert float(metric(app, "F (held-out)")) == 0.0


def test_two_tasks_side_by_side_each_with_its_own_task_picker():
    from pages.kit import COMPARE_INPUTS, Keys

    app = run_page(**{Keys.COMPARE: True, Keys.COMPARE_MODE: COMPARE_INPUTS,
                      "circuits.task_kind.b": "induction"})
    pickers = [r for r in app.radio if r.label == "Task"]
    assert [r.value for r in pickers] == ["ioi", "induction"]
    headings = [m.value for m in app.markdown if m.value.startswith("**Inputs:")]
    assert len(headings) == 2, headings
    # Each side ran its own task: the two component tables differ.
    tables = [d.value for d in app.dataframe if list(d.value.columns) == ["component",
                                                                         "direct effect"]]
    assert len(tables) == 2
    assert not tables[0].equals(tables[1])
