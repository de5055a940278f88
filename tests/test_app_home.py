"""The app shell and the Home page, driven by Streamlit's AppTest on the tiny model."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from pages.common import COMPARE_MODELS, CUSTOM_CHOICE, PAGES, Keys
from tests.conftest import APP_PATH

TIMEOUT = 90


def app_on(model_dir, **state) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = CUSTOM_CHOICE
    app.session_state[Keys.CUSTOM_MODEL] = str(model_dir)
    for key, value in state.items():
        app.session_state[key] = value
    return app.run()


def texts(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [c.value for c in app.caption]
    parts += [e.value for e in app.error] + [i.value for i in app.info]
    return "\n".join(str(p) for p in parts)


def test_home_shows_model_card_tokens_and_top_k(tiny_model_dir):
    app = app_on(tiny_model_dir, **{Keys.PROMPT: "The cat is"})
    assert not app.exception and not app.error
    assert app.title[0].value == "GPT-2 Interpretability Workbench"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Layers"] == "2" and metrics["Heads"] == "4" and metrics["d_model"] == "32"
    assert "**Tokens**: 4 of 64" in texts(app)  # BOS + "The", " cat", " is"
    table = app.dataframe[0].value
    assert list(table["id"]) == [50256, 464, 3797, 318]
    assert list(table["token"]) == ["<|endoftext|>", "The", "␣cat", "␣is"]
    assert len(app.get("plotly_chart")) == 1


@pytest.fixture
def reruns_through_the_shell(monkeypatch):
    """Make every AppTest run go through streamlit_app.py, as a browser session's reruns do.

    AppTest clears Streamlit's legacy `pages/`-folder flag before each run, so every run after
    the first executes the page file on its own, without the sidebar (a real server kept the
    sidebar and the typed prompt across reruns and page switches, checked in Chromium).
    """
    from streamlit.runtime.pages_manager import PagesManager

    original_init = PagesManager.__init__

    def init_without_legacy_pages(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_without_legacy_pages)


def test_sidebar_widgets_persist_their_keys(tiny_model_dir, reruns_through_the_shell):
    """Invariant: a prompt typed on one page is still the sidebar's prompt after switching pages
    and rerunning (the value typed here is the reference, not the widget's own state)."""
    typed = "Typed on the Home page"
    app = app_on(tiny_model_dir)
    app.sidebar.text_area(key=Keys.PROMPT).input(typed).run()
    assert app.sidebar.text_area(key=Keys.PROMPT).value == typed
    app.switch_page(PAGES[1].path).run()
    assert not app.exception and app.title[0].value == PAGES[1].title
    app.run()
    assert app.title[0].value == PAGES[1].title
    assert app.sidebar.selectbox(key=Keys.MODEL).value == CUSTOM_CHOICE
    # The patching page takes no sidebar prompt, so its box is not drawn there; the typed text
    # must still come back when a page that reads it is shown again.
    assert PAGES[1].uses_prompt or not [t for t in app.sidebar.text_area if t.key == Keys.PROMPT]
    app.switch_page(PAGES[0].path).run()
    assert app.sidebar.text_area(key=Keys.PROMPT).value == typed


@pytest.mark.parametrize("prompt, expected", [
    ("", "empty"), ("beep\x07", "control characters"), (" the" * 80, "reads at most 64"),
])
def test_bad_prompts_give_a_message_not_a_traceback(tiny_model_dir, prompt, expected):
    app = app_on(tiny_model_dir, **{Keys.PROMPT: prompt})
    assert not app.exception
    assert any(expected in e.value for e in app.error)


def test_emoji_prompt_is_handled(tiny_model_dir):
    app = app_on(tiny_model_dir, **{Keys.PROMPT: "I love 🙂 and café"})
    assert not app.exception and not app.error
    assert "non-ASCII" in texts(app)


def test_compare_prompts_side_by_side(tiny_model_dir):
    app = app_on(tiny_model_dir, **{Keys.COMPARE: True, Keys.PROMPT_B: "Another prompt"})
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 2


def test_comparing_prompts_shows_one_model_card_and_marks_the_tokens_that_differ(tiny_model_dir):
    """Reference: the prompts differ in one word, so by hand exactly " cat" / " dog" (position
    2) differ and every other token is shared; one model means one card."""
    app = app_on(tiny_model_dir, **{Keys.PROMPT: "The cat sat on the mat",
                                    Keys.COMPARE: True, Keys.PROMPT_B: "The dog sat on the mat"})
    assert not app.exception and not app.error
    assert [m.label for m in app.metric].count("Layers") == 1
    first, second = (frame.value for frame in app.dataframe)
    for table, word in ((first, "␣cat"), (second, "␣dog")):
        assert list(table.loc[table["differs"], "token"]) == [word]
    assert "Shaded: 1 token(s)" in texts(app)


def test_comparing_a_model_with_itself_shows_its_card_once(tiny_model_dir):
    """Reference: both sides on the same model (the default second choice is the first's)."""
    app = app_on(tiny_model_dir, **{Keys.MODEL: "demo", Keys.COMPARE: True,
                                    Keys.COMPARE_MODE: COMPARE_MODELS, Keys.MODEL_B: "demo"})
    assert not app.exception and not app.error
    assert [m.label for m in app.metric].count("Layers") == 1


def test_the_second_model_can_be_any_folder_through_its_own_other_box(tiny_model_dir):
    """Reference: the demo model (4 layers) beside the tiny folder (2 layers) typed in the second
    model's own box; the first model's box stays as it was."""
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    for key, value in {Keys.MODEL: "demo", Keys.COMPARE: True, Keys.COMPARE_MODE: COMPARE_MODELS,
                       Keys.MODEL_B: CUSTOM_CHOICE,
                       Keys.CUSTOM_MODEL_B: str(tiny_model_dir)}.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception and not app.error
    assert [m.value for m in app.metric if m.label == "Layers"] == ["4", "2"]
    assert app.session_state[Keys.CUSTOM_MODEL] == ""


def test_comparing_models_shows_each_sides_model_card(tiny_model_dir):
    """Reference: two sides on two models, so two cards (the demo model's 4 layers beside the
    tiny model's 2)."""
    app = app_on(tiny_model_dir, **{Keys.COMPARE: True, Keys.COMPARE_MODE: COMPARE_MODELS,
                                    Keys.MODEL_B: "demo"})
    assert not app.exception and not app.error
    layers = [m.value for m in app.metric if m.label == "Layers"]
    assert layers == ["2", "4"]


def test_bad_model_folder_is_a_message_with_alternatives(tmp_path):
    app = app_on(tmp_path / "missing")
    assert not app.exception
    assert any("does not exist" in e.value for e in app.error)


def test_offline_the_app_opens_on_the_labelled_demo_model(monkeypatch):
    import interp.models

    monkeypatch.setattr(interp.models, "hub_cached", lambda repo_id: False)  # GPT-2 not cached
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    assert app.session_state[Keys.MODEL] == "demo"
    assert "Demo model, not GPT-2" in texts(app)
    assert "GPT-2 is not loaded because" in texts(app)
    assert app.subheader[0].value == "Demo model (not GPT-2)"


def test_every_page_is_registered_once():
    paths = [entry.path for entry in PAGES]
    assert len(paths) == len(set(paths)) and paths[0] == "pages/home.py"


def test_the_demo_card_names_no_server_path_and_one_parameter_count():
    """Reference: the bundled weights' own count, read from model.safetensors here (804,352 ->
    "0.80M", the same string in the picker and on the card), and the bundled folder's absolute
    path, which a public deployment must not show."""
    import math

    from safetensors import safe_open

    from interp.models import DEMO_MODEL_DIR, MODEL_REGISTRY
    from pages.kit import model_label

    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    app.run()
    assert not app.exception
    shown = texts(app) + "\n" + "\n".join(str(m.value) for m in app.metric)
    assert str(DEMO_MODEL_DIR) not in shown.replace("\\", "")  # Markdown escapes removed
    with safe_open(str(DEMO_MODEL_DIR / "model.safetensors"), "pt") as weights:
        count = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    assert MODEL_REGISTRY["demo"].n_params == count == 804_352
    assert {m.label: m.value for m in app.metric}["Parameters"] == "0.80M"
    assert model_label("demo").endswith(" · 0.80M")


def test_known_results_are_offered_only_for_gpt2_small(tiny_model_dir):
    app = app_on(tiny_model_dir)
    assert "Not available for this model" in texts(app)
    assert not [b for b in app.button if b.label == "Run the known-results checks"]


def test_known_results_panel_runs_and_shows_its_table(tiny_model_dir, monkeypatch):
    """Page wiring only (the checks themselves are tested in test_known_results.py): with the
    model taken for GPT-2 small, the button runs the checks and the table appears."""
    from interp import known_results

    row = known_results.KnownResult("finding", "source", "setting", "ours", "differs", "why")
    report = known_results.KnownResultsReport("gpt2", True, "id", "0" * 64, (row,), 1.0)
    monkeypatch.setattr(known_results, "gpt2_small_identity", lambda model: (True, "id"))
    monkeypatch.setattr(known_results, "known_results", lambda model, progress=None: report)
    app = app_on(tiny_model_dir)
    next(b for b in app.button if b.label == "Run the known-results checks").click().run()
    assert not app.exception
    shown = [d.value for d in app.dataframe if "finding" in d.value.columns]
    assert shown and list(shown[0]["verdict"]) == ["differs"]


def test_a_second_model_over_the_memory_budget_is_one_clear_message(tiny_model_dir, monkeypatch):
    """A budget (WORKBENCH_MEMORY_BUDGET_GB) with room for the demo model, the runtime and its
    reserve, 1 MB to spare, and not for the tiny model (twice the demo's size) beside them: the
    first side draws its model, the second says why not in one error box, with no traceback."""
    from interp import caching
    from interp.memory_budget import RUNTIME_BYTES, WORKING_MEMORY_FACTOR
    from interp.models import plan_load

    demo_bytes = plan_load("demo").n_bytes
    assert plan_load(str(tiny_model_dir)).n_bytes > demo_bytes + 10**6
    limit = RUNTIME_BYTES + demo_bytes * (1 + WORKING_MEMORY_FACTOR) + 10**6
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET_GB", f"{limit / 1e9:.6f}")
    caching.model_cache.clear()  # a cache built with the budget set here
    try:
        app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
        for key, value in {Keys.MODEL: "demo", Keys.COMPARE: True,
                           Keys.COMPARE_MODE: COMPARE_MODELS, Keys.MODEL_B: CUSTOM_CHOICE,
                           Keys.CUSTOM_MODEL_B: str(tiny_model_dir)}.items():
            app.session_state[key] = value
        app.run()
        assert not app.exception
        errors = [e.value for e in app.error]
        assert len(errors) == 1 and errors[0].startswith("Not enough memory for "), errors
        assert r"raise WORKBENCH\_MEMORY\_BUDGET\_GB" in errors[0]  # as Markdown-escaped
        assert [m.value for m in app.metric if m.label == "Layers"] == ["4"]  # the first side
    finally:
        caching.model_cache.clear()
