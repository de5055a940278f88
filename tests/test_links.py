"""Shareable links, in AppTest on the demo model: a link made in one session opens the same
analysis, with the same numbers, in a fresh one; the prompt travels only when asked for; bad
values give defaults and a notice. Reference: the first session's own result tensors."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from streamlit.testing.v1 import AppTest

from interp.runs import ModelRef, RunRecord, RunStore, named_tensors
from pages.kit import DEFAULT_PROMPT, Keys
from pages.kit.links import PRIVACY_NOTICE
from tests.conftest import APP_PATH

TIMEOUT = 120
LENS = "pages/logit_lens.py"
PROMPT = "The capital of France is the city of"


def fresh_session(query: dict | None = None, **state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    for name, value in (query or {}).items():
        app.query_params[name] = value
    for key, value in state.items():
        app.session_state[key] = value
    return app.run()


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def shared_link(app: AppTest) -> dict:
    (code,) = [c for c in app.code if "model=" in c.value]
    return {name: values[0] for name, values in parse_qs(urlsplit(code.value).query).items()}


def lens_tensors(app: AppTest) -> dict[str, torch.Tensor]:
    return named_tensors(app.session_state[Keys.RESULTS]["logit_lens.lens"][1])


def run_lens(app: AppTest) -> AppTest:
    [button] = [b for b in app.button if b.label == "Run logit lens"]
    return button.click().run()


def test_a_link_with_the_prompt_gives_the_same_numbers_in_a_fresh_session():
    first = fresh_session(**{Keys.MODEL: "demo", Keys.PROMPT: PROMPT})
    first.switch_page(LENS).run()
    first.slider(key="logit_lens.k.widget").set_value(3).run()
    first.text_input(key="logit_lens.colour.widget").input(" John").run()
    run_lens(first)
    assert not problems(first), problems(first)
    link = shared_link(first)
    assert "prompt" not in link  # only on request, and no other typed text either
    assert "o.logit_lens.colour" not in link
    assert link["model"] == "demo" and link["o.logit_lens.k"] == "3"
    first.checkbox(key="links.with_prompt").check().run()
    assert any(PRIVACY_NOTICE in w.value for w in first.warning)
    link = shared_link(first)
    assert link["prompt"] == PROMPT and link["o.logit_lens.colour"] == '" John"'

    opened = fresh_session(link)  # a new browser session: nothing but the link
    applied = opened.session_state[Keys.PROMPT]
    assert applied == PROMPT and opened.session_state[Keys.MODEL] == "demo"
    # AppTest's switch_page runs the page without the shell, and the prompt the shell's
    # sidebar widget held is dropped there (a browser always runs the shell); so the session
    # that runs the page starts with the prompt the link gave, as set before its first run.
    second = fresh_session(link, **{Keys.PROMPT: applied})
    second.switch_page(LENS).run()
    assert second.slider(key="logit_lens.k.widget").value == 3
    assert second.text_input(key="logit_lens.colour.widget").value == " John"
    run_lens(second)
    assert not problems(second), problems(second)
    expected, got = lens_tensors(first), lens_tensors(second)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("query", [
    {"model": "no-such-model", "o.logit_lens.k": "banana", "o.logit_lens.view": "\"pie\""},
    {"model": "demo", "prompt": "bad\x00prompt", "o.logit_lens.k": "99",
     "o.logit_lens.source": "[1, 2]"},
    {"o.logit_lens.k": "true", "run": "0" * 32},
])
def test_garbage_link_values_fall_back_to_defaults_with_a_notice(query):
    app = fresh_session(query)  # the shell applies the model and prompt, on the Home page
    assert not problems(app), problems(app)
    assert app.session_state[Keys.PROMPT] == DEFAULT_PROMPT
    assert app.session_state[Keys.MODEL] != "no-such-model"
    notices = [i.value for i in app.info if "link" in i.value]
    app.switch_page(LENS).run()
    assert not problems(app), problems(app)
    assert app.slider(key="logit_lens.k.widget").value == 5
    notices += [i.value for i in app.info if "link" in i.value]
    expected = sum(name != "run" and not (name == "model" and value == "demo")
                   for name, value in query.items())
    assert len(notices) == expected, notices


def test_a_run_link_opens_the_saved_run_and_a_stale_one_gives_a_notice():
    store = RunStore(__import__("os").environ["WORKBENCH_RUNS_URL"])
    older = store.save(RunRecord("patching", "PatchingResult", ModelRef("demo"), title="older"))
    store.save(RunRecord("patching", "PatchingResult", ModelRef("demo"), title="newer"))
    app = fresh_session({"run": older.id})
    app.switch_page("pages/runs.py").run()
    assert not problems(app), problems(app)
    assert app.selectbox(key="runs.open.widget").value == older.id
    stale = fresh_session({"run": "f" * 32})
    stale.switch_page("pages/runs.py").run()
    assert not problems(stale), problems(stale)
    assert any("link" in i.value for i in stale.info)
