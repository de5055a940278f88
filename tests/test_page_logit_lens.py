"""The Logit lens page in Streamlit's AppTest on the bundled demo model (a 64-token window):
the lens and its views, DLA with a contrast, and a chat of several turns, past the window."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from interp.logit_lens import DLAResult, LensResult
from pages.common import Keys
from tests.conftest import APP_PATH

TIMEOUT = 120
PAGE = "pages/logit_lens.py"
P = "logit_lens."

pytestmark = pytest.mark.slow


def page_on(**state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    app.session_state[Keys.PROMPT] = "Mary and John went to the park. John gave the ball to"
    for key, value in state.items():
        app.session_state[P + key] = value
    app.run()
    app.switch_page(PAGE)
    return app.run()


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def kept(app: AppTest, kind: type) -> list:
    results = app.session_state["kit.results"] if "kit.results" in app.session_state else {}
    return [value for _, value in results.values() if isinstance(value, kind)]


def texts(app: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*app.markdown, *app.caption, *app.info])


def test_lens_views_and_dla_with_a_contrast():
    app = page_on()
    app.button(key=P + "run").click().run()
    assert not problems(app), problems(app)
    (lens,) = kept(app, LensResult)
    charts = app.get("plotly_chart")
    assert len(charts) == 4  # heatmap, evolution, DLA bars, DLA heads
    app.radio(key=P + "view.widget").set_value("table").run()
    assert not problems(app) and app.dataframe, problems(app)
    assert len(app.dataframe[0].value) == len(lens.layers)
    app.selectbox(key=P + "position.widget").set_value(2).run()
    app.text_input(key=P + "dla.contrast").input(" the").run()
    assert not problems(app), problems(app)
    dla = [d for d in kept(app, DLAResult) if d.contrast is not None]
    assert dla and dla[0].target_id == int(lens.candidate_ids[2, 0])
    shown = {m.label: m.value for m in app.metric}
    assert shown["Sum of the parts"] == f"{float(dla[0].logit[2]):.3f}", shown


def test_a_bad_colour_token_is_a_clear_message_not_a_traceback():
    app = page_on(colour=" Marylebone station")
    app.button(key=P + "run").click().run()
    assert not app.exception
    assert any("exactly one token" in e.value for e in app.error)


def test_two_chat_turns_each_token_has_its_lens():
    app = page_on(source="chat", temperature=0.0)
    for message in ("Hello there", "Where did John go?"):
        app.chat_input[0].set_value(message).run()
        assert not problems(app), problems(app)
    turns = app.session_state[P + "chat.turns"]
    assert [t["role"] for t in turns] == ["User", "Assistant", "User", "Assistant"]
    lenses = kept(app, LensResult)
    assert lenses and lenses[0].tracked_ids == (turns[-1]["token_ids"][0],)
    assert app.get("plotly_chart")
    app.button(key=P + "chat.clear").click().run()
    assert app.session_state[P + "chat.turns"] == []


def test_a_conversation_longer_than_the_window_never_crashes():
    long_turns = [{"role": role, "text": "the cat sat on the mat and then it slept " * 3}
                  for role in ("User", "Assistant") * 3]
    app = page_on(source="chat", temperature=0.0, **{"chat.turns": long_turns})
    app.chat_input[0].set_value("And then what happened to the cat?").run()
    assert not problems(app), problems(app)
    assert "left out" in texts(app)
    app.chat_input[0].set_value("Tell me more").run()
    assert not problems(app), problems(app)
