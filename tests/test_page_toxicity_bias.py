"""The Toxicity & bias page in AppTest on the demo model: each tab, with no classifier and with
a tiny one set through WORKBENCH_DETOXIFY_CHECKPOINT / WORKBENCH_DETOXIFY_CONFIG."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from interp import toxicity
from interp.explain import md_escape
from pages.kit import Keys
from tests.conftest import APP_PATH
from tests.test_toxicity import save_tiny_detoxify

pytestmark = pytest.mark.slow
PAGE = "pages/toxicity_bias.py"
P = "toxbias."
TIMEOUT = 240


def open_page(**state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    for key, value in state.items():
        app.session_state[P + key] = value
    app.run()
    app.switch_page(PAGE)
    return app.run()


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def tab(app: AppTest, label: str):
    return next(t for t in app.tabs if t.label == label)


def click(app: AppTest, label: str) -> AppTest:
    (button,) = [b for b in app.button if b.label == label]
    button.click().run()
    assert not problems(app), problems(app)
    return app


def charts(block) -> int:
    return len(block.get("plotly_chart"))


@pytest.fixture
def no_classifier(monkeypatch):
    for name in (toxicity.CHECKPOINT_SETTING, toxicity.CONFIG_SETTING):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tiny_classifier_set(monkeypatch, tmp_path):
    checkpoint, folder = save_tiny_detoxify(tmp_path)
    monkeypatch.setenv(toxicity.CHECKPOINT_SETTING, checkpoint)
    monkeypatch.setenv(toxicity.CONFIG_SETTING, folder)
    return checkpoint, folder


def test_without_a_classifier_the_toxicity_tab_says_so_and_every_other_tab_runs(no_classifier):
    app = open_page(group_k=2)
    assert not problems(app), problems(app)
    assert [t.label for t in app.tabs] == ["Toxicity", "Bias probes", "Confidence & failure cases"]
    unavailable = md_escape(toxicity.unavailable_message("original"))
    assert [w.value for w in tab(app, "Toxicity").warning] == [unavailable]
    assert charts(tab(app, "Confidence & failure cases")) == 1  # the trace runs on opening
    click(app, "Run all probes")
    assert charts(tab(app, "Toxicity")) == 0
    assert charts(tab(app, "Bias probes")) == 3  # differences, probabilities, sentence pairs
    assert charts(tab(app, "Confidence & failure cases")) == 3  # trace, consistency, cases
    assert sum(e.label == "Explain" for e in app.expander) == 5  # one per result


def test_a_probe_runs_from_its_own_button_alone(no_classifier):
    app = open_page()
    click(app, "Run template probe")
    assert charts(tab(app, "Bias probes")) == 2
    click(app, "Check consistency")
    assert charts(tab(app, "Confidence & failure cases")) == 2  # the trace and consistency
    assert sum(e.label == "Explain" for e in app.expander) == 3


def test_a_tiny_classifier_set_through_the_setting_scores_samples_after_the_filter(
        tiny_classifier_set):
    checkpoint, folder = tiny_classifier_set
    classifier = toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=checkpoint,
                                                                    config_folder=folder))
    prompt = "The nurse said that"
    assert toxicity.check_prompt(classifier, prompt).flagged  # the tiny BERT flags it
    app = open_page(tox_prompt=prompt, tox_k=3, tox_tokens=5, group_k=2, group_tokens=4,
                    group_terms="Black, white")
    assert not problems(app), problems(app)
    toxicity_tab = tab(app, "Toxicity")
    assert not toxicity_tab.warning
    assert any(toxicity.CHECKPOINT_SETTING in c.value for c in toxicity_tab.caption)
    click(app, "Sample and score")
    warnings = [w.value for w in tab(app, "Toxicity").warning]
    assert len(warnings) == 1 and "rates this prompt" in warnings[0]
    assert charts(tab(app, "Toxicity")) == 0  # the input filter stopped it
    app.checkbox(key=P + "tox_go_on.widget").check().run()
    click(app, "Sample and score")
    assert charts(tab(app, "Toxicity")) == 1
    assert any(e.label.startswith("Content warning") for e in tab(app, "Toxicity").expander)
    click(app, "Sample per group")
    assert charts(tab(app, "Bias probes")) == 1
