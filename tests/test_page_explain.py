"""The Explain panel with Groq, in AppTest on the demo model, against a fake server on 127.0.0.1.

The app's real `groq` client is pointed at the fake server through `WORKBENCH_GROQ_BASE_URL`, with
the key in the environment. Each scripted answer must end in the page behaviour the issue asks
for: the checked reply, or a one-line reason with the offline explanation, never a traceback;
a kept explanation is shown again on a rerun without a second request.
"""

from __future__ import annotations

import logging
import re

import pytest
from streamlit.testing.v1 import AppTest

from interp.explain_llm import REPLY_CACHE, to_markdown
from interp.explain_llm.key import KEY_NAME
from interp.explain_llm.settings import BASE_URL_VARIABLE, TIMEOUT_VARIABLE
from pages.kit import Keys
from pages.kit.ai import OFFLINE_LABEL
from tests.conftest import APP_PATH
from tests.fake_chat_server import FakeChatServer, Scripted, chunk, error_body

KEY = "gsk_page_test_5a4b3c2d1e0f99887766"
TIMEOUT = 120
GROQ_BUTTON = "Explain with Groq"


@pytest.fixture
def server(monkeypatch):
    fake = FakeChatServer().start()
    monkeypatch.setenv(BASE_URL_VARIABLE, fake.url)
    REPLY_CACHE.clear()  # the library's process-wide cache would answer for the server
    yield fake
    fake.stop()
    REPLY_CACHE.clear()


@pytest.fixture
def with_key(monkeypatch, server):
    monkeypatch.setenv(KEY_NAME, KEY)
    monkeypatch.setenv(TIMEOUT_VARIABLE, "1.5")  # a scripted stall ends the request quickly
    return server


def streamed(text: str) -> Scripted:
    return Scripted(events=[chunk(text), chunk(None, finish_reason="stop")])


def patching_run() -> AppTest:
    """The patching page on the demo model after its default run."""
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    app.run()
    app.switch_page("pages/patching.py")
    app.run()
    app.button(key="patching.run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.exception]
    return app


def groq_buttons(app: AppTest) -> list:
    return [b for b in app.button if b.label == GROQ_BUTTON]


def ask_groq(app: AppTest) -> AppTest:
    """Press the first panel's Explain with Groq button (a run may show several panels)."""
    buttons = groq_buttons(app)
    assert buttons, "no Explain with Groq button"
    return buttons[0].click().run()


def shown_text(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [c.value for c in app.caption]
    parts += [w.value for w in app.warning]
    return "\n".join(str(p) for p in parts)


def element_values(node) -> list[str]:
    """Every element's proto and value in the AppTest tree, walked from `node`."""
    found = [str(getattr(node, "proto", "")), str(getattr(node, "value", ""))]
    for child in getattr(node, "children", {}).values():
        found += element_values(child)
    return found


def test_a_reply_is_shown_with_its_grounding_count(with_key):
    """Reference: the demo model has 2 layers, so "L42H7" is the one name not in the result."""
    with_key.script(streamed("The head L42H7 does all the work."))
    app = ask_groq(patching_run())
    assert not app.exception and not app.error
    text = shown_text(app)
    assert "AI explanation by openai/gpt-oss-20b on Groq" in text
    assert "1 of 1 names and values in this reply are not in the result" in text
    assert "L42H7" in text
    assert len(with_key.received) == 1
    assert [b for b in app.get("download_button") if b.proto.label == "Copy as Markdown"]


def test_a_rerun_shows_the_kept_reply_without_asking_again(with_key):
    """Reference: the fake server counts the requests it received."""
    with_key.script(streamed("The head L42H7 does all the work."))
    app = patching_run()
    first = groq_buttons(app)[0].key
    ask_groq(app)
    app.run()
    app.run()
    assert len(with_key.received) == 1
    assert "L42H7" in shown_text(app)
    assert first not in [b.key for b in groq_buttons(app)]


def test_a_rate_limit_then_success_shows_the_reply_after_the_wait_asked(with_key):
    """Reference: the fake server's log: two requests, the second after the retry-after wait."""
    with_key.script(Scripted(status=429, body=error_body("Rate limit reached"),
                             headers={"retry-after": "0.5"}),
                    streamed("The head L42H7 does all the work."))
    app = ask_groq(patching_run())
    assert not app.exception and not app.error
    assert "L42H7" in shown_text(app)
    assert not [w for w in app.warning if "offline explanation" in w.value]
    first, second = with_key.received
    assert second.at - first.at >= 0.5


@pytest.mark.parametrize("answers, reason", [
    ([Scripted(status=401, body=error_body("Invalid API Key", "invalid_api_key"))], "key"),
    ([Scripted(status=500, body=error_body("boom"))] * 3, "Groq"),
    ([Scripted(events=[chunk("L1 "), chunk("restores"), chunk(None, finish_reason="stop")],
               stall_s=5.0)], "did not answer within 1.5 s"),
    ([Scripted(events=[chunk("L1 restores"), chunk(None, finish_reason="length")])],
     "token limit"),
], ids=["401", "500", "timeout", "truncated"])
def test_a_failure_shows_one_line_and_the_offline_explanation(with_key, answers, reason):
    """Reference: the issue's failure contract (one line, offline text, no traceback)."""
    with_key.script(*answers)
    app = ask_groq(patching_run())
    assert not app.exception and not app.error
    # The page may warn about the result itself too (e.g. an attribution caveat): exactly one
    # warning is about Groq.
    (warning,) = [w for w in app.warning if "offline explanation" in w.value]
    assert "\n" not in warning.value and reason in warning.value
    assert "Showing the offline explanation" in warning.value
    assert OFFLINE_LABEL in shown_text(app)
    assert "Traceback" not in shown_text(app)


def test_a_script_tag_in_the_reply_shows_as_text(with_key):
    """Reference: Markdown escaping by hand: `<` must reach the page as `\\<`."""
    with_key.script(streamed("Look: <script>alert(1)</script> and <img src=x onerror=alert(2)>"))
    app = ask_groq(patching_run())
    markdown = "\n".join(m.value for m in app.markdown)
    assert "\\<script\\>" in markdown and "\\<img" in markdown
    assert re.search(r"(?<!\\)<(script|img)", markdown) is None  # no unescaped tag


def test_without_a_key_the_offline_explanation_shows_and_nothing_is_sent(server, monkeypatch):
    """Reference: the fake server's request count stays 0; no Groq button is offered."""
    monkeypatch.delenv(KEY_NAME, raising=False)
    app = patching_run()
    assert OFFLINE_LABEL in shown_text(app)
    assert not groq_buttons(app)
    assert server.received == []


def test_the_key_leaves_no_trace_in_page_output_or_logs(with_key, caplog):
    """Reference: the key string itself, searched in every element, log record and the export."""
    caplog.set_level(logging.DEBUG)
    with_key.script(streamed(f"The head L42H7 does all the work. Echo: {KEY}"))
    app = ask_groq(patching_run())
    app.run()
    assert len(with_key.received) == 1  # the key did go to the server, and only there
    page = "\n".join(element_values(app._tree))
    assert "key set (from environment)" in page
    kept = app.session_state[Keys.AI_EXPLANATIONS]
    exports = [to_markdown(explanation) for _, explanation in kept.values()]
    for where, text in [("page", page), ("logs", caplog.text), ("export", "\n".join(exports))]:
        assert KEY not in text, f"the key shows in the {where}"
