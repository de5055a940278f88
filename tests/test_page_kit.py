"""The page kit: nothing is rebuilt on a rerun that changes nothing, custom models can be
switched off, and user text never turns into Markdown."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter

import pytest
from streamlit.testing.v1 import AppTest

import pages.kit
from interp import explain, export
from interp.errors import InvalidOptionError, ModelNotAllowedError
from interp.patching import sweeps
from interp.settings import ALLOW_CUSTOM_MODELS, check_model_allowed, custom_models_allowed
from pages.kit import COMPARE_MODELS, COMPARE_PROMPTS, CUSTOM_CHOICE, PAGES, Keys
from tests.conftest import APP_PATH

TIMEOUT = 90
PATCHING = "pages/patching.py"
MARKDOWN = "**x** <b>y</b> [a](javascript:1)"


def app_on(model_dir, page: str | None = None, **state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = CUSTOM_CHOICE
    app.session_state[Keys.CUSTOM_MODEL] = str(model_dir)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    if page is not None:
        app.switch_page(page)
        app.run()
    return app


def counted(monkeypatch, calls: Counter, module, name: str) -> None:
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)


def test_a_rerun_that_changes_nothing_rebuilds_no_export_explanation_or_run(
        tiny_model_dir, monkeypatch):
    """Reference: call counts. Two sweeps give two explanations once; exports are built only
    when a download is clicked, and AppTest never clicks one."""
    calls = Counter()
    for module, name in ((export, "to_json"), (export, "to_csv"), (export, "figure_to_html"),
                         (explain, "explain"), (sweeps, "run_sweeps")):
        counted(monkeypatch, calls, module, name)
    app = app_on(tiny_model_dir, PATCHING, **{
        "patching.sweeps": ["Residual stream (resid_pre)", "Attention heads (z)"],
        "patching.attribution": False, "patching.task_kind": "custom"})
    app.button(key="patching.run").click().run()
    assert not app.exception and not app.error
    assert len(app.get("download_button")) >= 2 * 3
    assert calls == Counter(explain=2, run_sweeps=1)
    app.run()
    app.button(key="patching.run").click().run()  # same inputs: the kept run is shown
    assert not app.exception and not app.error
    assert calls == Counter(explain=2, run_sweeps=1)


@pytest.mark.parametrize("capabilities, prompt_box, switch, second_model", [
    (dict(uses_prompt=False, compare_modes=()), False, False, False),
    (dict(uses_prompt=True, compare_modes=(COMPARE_MODELS,)), True, True, True),
])
def test_the_sidebar_shows_only_the_controls_the_page_uses(tiny_model_dir, monkeypatch,
                                                           capabilities, prompt_box, switch,
                                                           second_model):
    home = dataclasses.replace(PAGES[0], **capabilities)
    for module in (pages.kit, pages.kit.registry):
        monkeypatch.setattr(module, "PAGES", (home, *PAGES[1:]))
    app = app_on(tiny_model_dir, **{Keys.COMPARE: True, Keys.COMPARE_MODE: COMPARE_PROMPTS})
    assert not app.exception and not app.error
    assert bool([w for w in app.sidebar.text_area if w.key == Keys.PROMPT]) is prompt_box
    assert bool(app.sidebar.toggle) is switch
    # one compare mode at most: nothing to choose (the AI explanations' level radio is not one)
    assert not [w for w in app.sidebar.radio if w.key == Keys.COMPARE_MODE]
    assert bool([w for w in app.sidebar.selectbox if w.key == Keys.MODEL_B]) is second_model
    assert not [w for w in app.sidebar.text_area if w.key == Keys.PROMPT_B]


@pytest.mark.parametrize("environ, secrets, allowed", [
    ({}, None, True),
    ({}, {ALLOW_CUSTOM_MODELS: False}, False),
    ({}, {ALLOW_CUSTOM_MODELS: "off"}, False),
    ({ALLOW_CUSTOM_MODELS: "0"}, None, False),
    ({ALLOW_CUSTOM_MODELS: "true"}, {ALLOW_CUSTOM_MODELS: False}, True),  # environment wins
    ({ALLOW_CUSTOM_MODELS: "No"}, {ALLOW_CUSTOM_MODELS: True}, False),
])
def test_custom_models_setting_reads_environment_then_secrets(environ, secrets, allowed):
    assert custom_models_allowed(secrets, environ) is allowed


def test_custom_models_setting_refuses_an_unclear_value():
    with pytest.raises(InvalidOptionError, match="false"):
        custom_models_allowed(None, {ALLOW_CUSTOM_MODELS: "maybe"})


@pytest.mark.parametrize("name", ["/etc", "/root/.cache/huggingface", "EleutherAI/pythia-70m",
                                  "openai-community/gpt2"])
def test_when_switched_off_only_registered_keys_load(name):
    check_model_allowed(name, allowed=True)
    with pytest.raises(ModelNotAllowedError, match="only its listed models") as refused:
        check_model_allowed(name, allowed=False)
    assert name not in str(refused.value)  # the same message whatever was typed
    check_model_allowed("demo", allowed=False)


@pytest.mark.parametrize("how", ["environment", "secrets"])
def test_switched_off_the_sidebar_hides_other_and_ignores_a_stored_path(tiny_model_dir,
                                                                         monkeypatch, how):
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    if how == "environment":
        monkeypatch.setenv(ALLOW_CUSTOM_MODELS, "false")
    else:
        monkeypatch.delenv(ALLOW_CUSTOM_MODELS, raising=False)
        app.secrets[ALLOW_CUSTOM_MODELS] = False
    app.session_state[Keys.MODEL] = CUSTOM_CHOICE
    app.session_state[Keys.CUSTOM_MODEL] = str(tiny_model_dir)
    app.run()
    assert not app.exception and not app.error
    model = app.sidebar.selectbox(key=Keys.MODEL)
    assert CUSTOM_CHOICE not in model.options and model.value != CUSTOM_CHOICE
    assert not [w for w in app.sidebar.text_input if w.key == Keys.CUSTOM_MODEL]
    assert app.metric[0].value != "2"  # not the tiny model's 2 layers


def shown_as_markdown(app: AppTest) -> list[str]:
    """Every element whose text Streamlit renders as Markdown."""
    parts = [e.value for kind in ("markdown", "caption", "subheader", "header", "info",
                                  "warning", "error", "success") for e in app.get(kind)]
    parts += [m.label for m in app.metric] + [e.label for e in app.get("expandable")]
    return [str(p) for p in parts]


def raw_markup(parts: list[str]) -> list[str]:
    return [p for p in parts if any(raw in p for raw in ("**x**", "<b>", "[a](javascript"))]


@pytest.fixture(scope="module")
def markdown_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model in a folder whose name is Markdown and HTML (a typed path is user text)."""
    folder = tmp_path_factory.mktemp("md") / MARKDOWN
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_home_shows_markdown_in_prompts_and_model_names_as_typed(markdown_model_dir):
    app = app_on(markdown_model_dir, **{Keys.PROMPT: MARKDOWN + " is", Keys.COMPARE: True,
                                        Keys.COMPARE_MODE: COMPARE_PROMPTS,
                                        Keys.PROMPT_B: MARKDOWN})
    assert not app.exception and not app.error
    parts = shown_as_markdown(app)
    assert any("javascript" in p for p in parts)  # the text is shown, escaped
    assert not raw_markup(parts), raw_markup(parts)


def test_patching_summary_shows_markdown_in_prompts_and_model_names_as_typed(markdown_model_dir):
    app = app_on(markdown_model_dir, PATCHING, **{
        "patching.task_kind": "custom", "patching.attribution": False,
        "patching.sweeps": ["Residual stream (resid_pre)"],
        "patching.clean": MARKDOWN + " John gave a drink to",
        "patching.corrupted": MARKDOWN + " Mary gave a drink to"})
    app.button(key="patching.run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    parts = shown_as_markdown(app)
    assert any("javascript" in p for p in parts)
    assert not raw_markup(parts), raw_markup(parts)


def test_every_model_choice_fits_the_sidebar_picker():
    """The sidebar's select box shows about 30 characters before it cuts the choice off (the
    deploy check's browser saw "Other: Hugging Face id or local folder" cut, 38 of them)."""
    from interp.models import MODEL_REGISTRY
    from pages.kit.models import CUSTOM_CHOICE, model_label

    for key in (*MODEL_REGISTRY, CUSTOM_CHOICE):
        assert len(model_label(key)) <= 30, model_label(key)
