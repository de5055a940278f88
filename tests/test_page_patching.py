"""The Activation patching page, driven by Streamlit's AppTest on the tiny model."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from pages.common import CUSTOM_CHOICE, Keys
from tests.conftest import APP_PATH

TIMEOUT = 60
PAGE = "pages/patching.py"


def page_on(model_dir, **state) -> AppTest:
    """The patching page on the tiny model, with `state` preset ('.' keys as the page uses)."""
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = CUSTOM_CHOICE
    app.session_state[Keys.CUSTOM_MODEL] = str(model_dir)
    app.session_state["patching.ioi_n"] = 2
    for key, value in state.items():
        app.session_state["patching." + key] = value
    app.run()  # the app shell first (sidebar, navigation), as a browser does
    app.switch_page(PAGE)
    return app.run()


def run_button(app: AppTest):
    return app.button(key="patching.run")


def errors(app: AppTest) -> str:
    return "\n".join(e.value for e in app.error)


def texts(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [c.value for c in app.caption]
    return "\n".join(str(p) for p in parts)


def test_page_is_registered_and_opens_without_running(tiny_model_dir):
    app = page_on(tiny_model_dir)
    assert not app.exception and not app.error
    assert app.title[0].value == "Activation patching"
    assert not app.get("plotly_chart")


@pytest.mark.parametrize("task, charts", [
    ("agreement", 4 * 2 + 1),  # four sweeps, exact and attribution, plus the verb curves
    ("ioi", 4 * 2),
    ("fact", 4 * 2),
    ("custom", 4 * 2),
])
def test_each_task_runs_with_defaults_in_one_click(tiny_model_dir, task, charts):
    app = page_on(tiny_model_dir, task_kind=task)
    assert not app.error, errors(app)
    run_button(app).click().run()
    assert not app.exception and not app.error, errors(app)
    assert len(app.get("plotly_chart")) == charts
    shown = texts(app)
    assert "Pearson r" in shown and "What this can and can't show" in shown
    assert {m.label.split(" ")[0] for m in app.metric} >= {"Clean", "Corrupted", "Gap"}
    assert len(app.get("download_button")) >= 3 * charts
    assert "Rows are layers, columns token positions" in shown


@pytest.mark.parametrize("state, expected", [
    ({"sentence": "The cat sat on the mat"}, "No verb of a known pair"),
    ({"sentence": "The fox is in the garden"}, "same number of tokens"),
    ({"task_kind": "custom", "correct": "Eiffelmania"}, "must be a single token"),
    ({"task_kind": "custom", "clean": "The cat sat on the",
      "corrupted": "The big cat sat on the", "correct": "mat", "wrong": ""},
     "same number of tokens"),
    ({"task_kind": "custom", "clean": ""}, "empty"),
    ({"task_kind": "fact", "fact_answer": "Parisville"}, "must be a single token"),
    ({"task_kind": "fact", "fact_subject": "Big Ben"}, "does not occur"),
    ({"task_kind": "fact", "fact_corruption": "noise", "metric": "logit_diff"},
     "needs a wrong answer"),
    ({"sweeps": []}, "at least one thing to patch"),
])
def test_bad_inputs_give_a_message_not_a_traceback(tiny_model_dir, state, expected):
    app = page_on(tiny_model_dir, **state)
    run_button(app).click().run()
    assert not app.exception
    assert expected in errors(app)
    assert not app.get("plotly_chart")


def test_results_survive_a_bad_edit_and_a_page_switch(tiny_model_dir):
    app = page_on(tiny_model_dir, sweeps=["Residual stream (resid_pre)"], attribution=False)
    run_button(app).click().run()
    assert not app.error and len(app.get("plotly_chart")) == 2  # heatmap + verb curves
    app.text_input(key="patching.sentence.widget").set_value("No verb here").run()
    assert "No verb of a known pair" in errors(app)
    assert len(app.get("plotly_chart")) == 2
    assert any("earlier run" in i.value for i in app.info)
    app.switch_page("pages/home.py").run()
    app.switch_page(PAGE).run()
    assert app.text_input(key="patching.sentence.widget").value == "No verb here"
    assert len(app.get("plotly_chart")) == 2


def test_threshold_filters_the_ranked_table(tiny_model_dir):
    app = page_on(tiny_model_dir, sweeps=["Attention heads (z)"], attribution=False,
                  task_kind="custom")
    run_button(app).click().run()
    assert not app.error, errors(app)
    table = app.dataframe[-1].value
    app.slider(key="patching.threshold.widget").set_value(0.0).run()
    everything = app.dataframe[-1].value
    assert len(everything) == 2 * 4  # the tiny model's 2 layers x 4 heads
    assert len(table) <= len(everything)
    assert (table["normalized"].abs() >= 0.1).all()


def test_noise_corruption_runs_with_the_probability_metric(tiny_model_dir):
    app = page_on(tiny_model_dir, task_kind="fact", fact_corruption="noise",
                  sweeps=["Residual stream (resid_pre)"])
    run_button(app).click().run()
    assert not app.exception and not app.error, errors(app)
    assert any(m.label == "Clean correct_prob" for m in app.metric)
    assert "noise of 3x" in texts(app)
