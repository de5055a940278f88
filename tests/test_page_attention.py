"""The Attention page in AppTest on the demo model: every view on a 64-token prompt (the demo
model's whole context), zooming into a head, the lines view, and both compare modes with the
difference map where tokens align and a notice where they don't."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from interp.attention import MAX_FLOW_TOKENS
from interp.models import load_model
from pages.kit import COMPARE_MODELS, COMPARE_PROMPTS, Keys
from tests.conftest import APP_PATH

pytestmark = pytest.mark.slow
TIMEOUT = 120
SENTENCES = ("When Mary and John went to the store, John gave a drink to Mary. "
             "The keys to the cabinet are on the table. ")


@pytest.fixture(scope="module")
def prompt_64():
    """The longest run of words from SENTENCES that is 64 tokens with BOS on the demo model."""
    model = load_model("demo", device="cpu")
    words = (SENTENCES * 6).split()
    for count in range(len(words), 0, -1):
        text = " ".join(words[:count])
        if model.to_tokens(text).shape[1] <= 64:
            assert model.to_tokens(text).shape[1] == 64
            return text
    raise AssertionError("no 64-token prompt")


def opened(**state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = app.session_state[Keys.MODEL_B] = "demo"
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    app.switch_page("pages/attention.py")
    app.run()
    app.button(key="attention.run").click().run()
    assert not problems(app), problems(app)
    return app


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def chart_titles(app: AppTest) -> list[str]:
    titles = []
    for chart in app.get("plotly_chart"):
        layout = json.loads(chart.proto.spec).get("layout", {})
        titles.append(layout.get("title", {}).get("text", ""))
    return titles


def chart_titled(app: AppTest, start: str) -> dict:
    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec.get("layout", {}).get("title", {}).get("text", "").startswith(start):
            return spec
    raise AssertionError(f"no chart titled {start!r}: {chart_titles(app)}")


def texts(app: AppTest) -> str:
    return " ".join([c.value for c in app.caption] + [i.value for i in app.info]
                    + [m.value for m in app.markdown])


def test_every_view_draws_on_a_64_token_prompt_and_zooms_into_the_chosen_head(prompt_64):
    """Invariant: the grid holds every layer x head of the demo model (4 x 4), capped at 32
    cells a side and saying so; zoom, lines and per-token views follow the chosen head."""
    app = opened(**{Keys.PROMPT: prompt_64})
    assert sum("Demo model, not GPT-2" in c.value for c in app.caption) == 1  # said once
    titles = chart_titles(app)
    for start in ("Every head (4 layers x 4 heads)", "Layer 0, every head", "L0H0:",
                  "Layer 0, L0H0: query tokens", "Where each head looks from",
                  "Which heads look at", "Previous token score of every head",
                  "Attention rollout up to layer 0"):
        assert any(title.startswith(start) for title in titles), (start, titles)
    grid = chart_titled(app, "Every head")["data"][0]
    assert "Capped" in texts(app) and "64 tokens" in texts(app)
    assert f"at most {MAX_FLOW_TOKENS} tokens" in texts(app)  # flow: the notice, not a freeze
    assert grid["customdata"]["shape"].startswith(f"{4 * 33 - 1}, {4 * 33 - 1}")

    app.selectbox(key="attention.layer.widget").set_value(2).run()
    app.selectbox(key="attention.head.widget").set_value(3).run()
    assert not problems(app), problems(app)
    zoom = chart_titled(app, "L2H3:")
    assert len(zoom["data"][0]["x"]) == 64  # the selected head in full: one column per token
    chart_titled(app, "Layer 2, L2H3: query tokens")
    app.toggle(key="attention.lines_average.widget").set_value(True).run()
    chart_titled(app, "Layer 2, the mean of every head")
    app.selectbox(key="attention.kind.widget").set_value("sink").run()
    app.slider(key="attention.threshold.widget").set_value(0.1).run()
    assert not problems(app), problems(app)
    assert chart_titled(app, "Every head")["layout"].get("shapes"), "passing heads not outlined"
    app.radio(key="attention.weighting.widget").set_value("value_norm").run()
    app.button(key="attention.run").click().run()
    assert not problems(app), problems(app)
    assert chart_titled(app, "L2H3: Value-weighted norms")


def test_two_prompts_that_align_get_a_difference_map():
    """Invariant: prompts with the same number of tokens are compared cell by cell for the
    chosen head, and the position whose token differs is named."""
    app = opened(**{Keys.PROMPT: "The keys to the cabinet", Keys.COMPARE: True,
                    Keys.COMPARE_MODE: COMPARE_PROMPTS, Keys.PROMPT_B: "The keys to the table"})
    headings = [m.value for m in app.markdown if m.value.startswith("**Prompt:")]
    assert len(headings) == 2
    chart_titled(app, "L0H0: second minus first")
    assert "position(s) 5" in texts(app)
    app.button(key="attention.flow.run").click().run()  # short prompt: flow is offered
    assert not problems(app), problems(app)
    chart_titled(app, "Attention flow")


@pytest.mark.parametrize("mode", [COMPARE_PROMPTS, COMPARE_MODELS])
def test_compare_shows_the_same_head_side_by_side(prompt_64, mode):
    """Invariant: two prompts of 6 and 64 tokens don't align (a notice, no map); the same
    prompt on the same model twice aligns with identical tokens."""
    app = opened(**{Keys.PROMPT: prompt_64, Keys.COMPARE: True, Keys.COMPARE_MODE: mode,
                    Keys.PROMPT_B: "The keys to the cabinet"})
    assert sum(title.startswith("L0H0: Attention weights") for title in chart_titles(app)) == 2
    if mode == COMPARE_PROMPTS:
        assert "don't align: 64 tokens against 6" in texts(app)
        assert not any("second minus first" in title for title in chart_titles(app))
    else:
        chart_titled(app, "L0H0: second minus first")
        assert "identical" in texts(app)
