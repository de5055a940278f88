"""Every registered page, opened in AppTest on the bundled demo model, runs its main action.

A page is tested here the moment it is added to `PAGES`: it must open, press its declared main
button, and show a figure, with no exception and no error box, alone and in each compare mode
its `PageEntry` declares. AppTest is not thread-safe, so these run one at a time.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from pages.kit import COMPARE_MODELS, DEFAULT_PROMPT, PAGES, Keys
from tests.conftest import APP_PATH
from tests.runs_support import SEEDED_TITLE, seed_saved_run

TIMEOUT = 120


def open_page(entry, **state) -> AppTest:
    if entry.url_path == "runs":
        seed_saved_run()
        # Other tests of the session save runs to the same store, some without a figure: open
        # the seeded one (the page opens the newest run that matches its filters).
        state = {"runs.text": SEEDED_TITLE, **state}
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    app.session_state[Keys.MODEL_B] = "demo"
    # Set as a user would: AppTest's switch_page runs the page file without the app shell, and
    # a value only the shell's sidebar widget held would be dropped after the first run.
    for key, value in {Keys.PROMPT: DEFAULT_PROMPT, **state}.items():
        app.session_state[key] = value
    app.run()  # the app shell first, as a browser does
    app.switch_page(entry.path)
    return app.run()


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def run_main_action(app: AppTest, entry) -> AppTest:
    if entry.main_action is not None:
        buttons = [b for b in app.button if b.label == entry.main_action]
        assert len(buttons) == 1, f"{entry.path}: no single {entry.main_action!r} button"
        buttons[0].click().run()
    return app


@pytest.mark.parametrize("entry", PAGES, ids=[entry.url_path for entry in PAGES])
def test_page_opens_and_runs_its_main_action_on_the_demo_model(entry):
    app = open_page(entry)
    assert not problems(app), problems(app)
    assert app.title, f"{entry.path} shows no title"
    run_main_action(app, entry)
    assert not problems(app), problems(app)
    assert app.get("plotly_chart"), f"{entry.path}: its main action showed no figure"


CASES = [(entry, mode) for entry in PAGES for mode in entry.compare_modes]


@pytest.mark.parametrize("entry, mode", CASES,
                         ids=[f"{entry.url_path}-{mode}" for entry, mode in CASES])
def test_page_compares_side_by_side_in_each_mode_it_declares(entry, mode):
    app = open_page(entry, **{Keys.COMPARE: True, Keys.COMPARE_MODE: mode,
                              Keys.PROMPT_B: "The keys to the cabinet"})
    run_main_action(app, entry)
    assert not problems(app), problems(app)
    headings = [m.value for m in app.markdown if m.value.startswith(("**Model:", "**Prompt:",
                                                                      "**Inputs:"))]
    assert len(headings) == 2, headings
    assert len(app.get("plotly_chart")) >= 2
    if mode == COMPARE_MODELS:
        assert all("Demo model" in heading for heading in headings), headings


@pytest.mark.parametrize("url_path", ["patching", "circuits"])
def test_the_induction_task_runs_on_the_patching_and_circuits_pages(url_path):
    """#28: the induction task on the bundled demo model; on the patching page its run adds
    the induction check's tab and figure."""
    entry = next(e for e in PAGES if e.url_path == url_path)
    app = open_page(entry, **{f"{url_path}.task_kind": "induction"})
    run_main_action(app, entry)
    assert not problems(app), problems(app)
    assert app.get("plotly_chart")
    if url_path == "patching":
        assert any(tab.label == "Induction check" for tab in app.tabs)
        assert len(app.get("plotly_chart")) >= 2
