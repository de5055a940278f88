"""Real-browser smoke test: every registered page renders in headless Chromium without an exception.

The same run checks the layout at 1400 px (every page, after its main action, and compare mode)
and at 800 px wide: no text cut off, no chart title wider than its chart (screenshots kept).

It starts `streamlit run streamlit_app.py` on a free port (offline), opens each page of
`pages.common.PAGES` with Playwright driving Debian's Chromium (a browser is never downloaded),
waits until the script run has finished, fails on any exception box, clicks the page's main
button (its `PageEntry.main_action`) and checks that a figure appears, and saves a screenshot
per page under `test-artifacts/browser/`.
Deep links come first, the default page (served at `/`) last: a fresh server's first request
may be a bookmarked `/<page>`, and that page must still run inside the app's shell (its sidebar).

The app runs with its own default model, as a user would see it: GPT-2 small if it is in the local
Hugging Face cache, else the bundled demo model. When no model can load offline, the pages must
still render, showing the clear "can't load" message instead of a traceback.

Without Chromium the test skips, unless WORKBENCH_REQUIRE_BROWSER=1 (set by `.ci/run` under CI):
then it fails, so CI can't pass without having run it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from bench.browser import (
    CHROMIUM,
    PAGE_RUN_MS,
    REPO,
    SHELL_TEXT,
    AppServerError,
    app_server,
    browser_page,
    check_rendered,
    click_and_wait,
    layout_problems,
    main_action,
    run_main_action,
    screenshot,
    texts,
    wait_for_app_shell,
    wait_until_idle,
)
from pages.common import PAGES, default_model_key
from tests.runs_support import seed_saved_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "browser"
# Text each page must show (pages not listed must show some title).
PAGE_TEXT = {"home": "GPT-2 Interpretability Workbench"}


def require_browser() -> bool:
    return os.environ.get("WORKBENCH_REQUIRE_BROWSER", "") == "1"


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        reason = (f"Chromium not found at {CHROMIUM}: install Debian's chromium "
                  "(apt-get install chromium) or set WORKBENCH_CHROMIUM to a Chromium binary")
        if require_browser():
            pytest.fail(f"{reason} (WORKBENCH_REQUIRE_BROWSER=1 forbids skipping)")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def app_url(chromium_path):
    """Base URL of a Streamlit server running the app; the server is stopped afterwards."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    seed_saved_run()  # the Runs page opens it, with its figure
    try:
        with app_server(sys.executable, ARTIFACTS / "streamlit.log") as (url, _process):
            yield url
    except AppServerError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def page(chromium_path):
    with browser_page(chromium_path) as opened:
        yield opened


def entry_for(url_path: str):
    return next(entry for entry in PAGES if entry.url_path == url_path)


def sidebar_problems(page, entry) -> list[str]:
    """The sidebar shows the prompt and the Compare switch only on pages that use them."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    shown = {"prompt box": sidebar.locator('textarea[aria-label="Prompt"]').count() > 0,
             "Compare switch": sidebar.get_by_text("Compare", exact=True).count() > 0}
    wanted = {"prompt box": entry.uses_prompt, "Compare switch": bool(entry.compare_modes)}
    return [f"{entry.url_path}: the sidebar {'shows' if shown[what] else 'lacks'} the {what}"
            for what in shown if shown[what] != wanted[what]]


def saved_run_drawn(main) -> bool:
    """The Runs page opens the newest saved run (one is seeded) and draws its figure."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        main.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=15_000)
    except PlaywrightTimeout:
        return False
    return True


def visit(page, url: str, name: str, model_expected: bool) -> list[str]:
    """Open one page, wait for its run to end, check it and save a screenshot named `name`."""
    page.goto(url, wait_until="domcontentloaded")
    wait_until_idle(page, PAGE_RUN_MS)
    wait_for_app_shell(page, name, PAGES[0].url_path)
    problems = check_rendered(page, name, model_expected)
    if name != PAGES[0].url_path and not page.url.rstrip("/").endswith(f"/{name}"):
        problems.append(f"{name}: the deep link ended on {page.url} instead of its page")
    if SHELL_TEXT not in page.locator('[data-testid="stSidebar"]').inner_text():
        problems.append(
            f"{name}: ran outside the app shell (no {SHELL_TEXT!r} sidebar). Streamlit runs "
            "pages/*.py on their own (legacy pages/ folder mode) for a fresh server's first "
            "request to a deep link, until st.navigation has run once")
    main = page.locator('[data-testid="stMain"]')
    if main.locator("h1").count() == 0:
        problems.append(f"{name}: no page title (h1) rendered")
    problems += sidebar_problems(page, entry_for(name))
    icon = page.locator("link[rel='shortcut icon']").first.get_attribute("href") or ""
    if icon.startswith(("http://", "https://")) and "127.0.0.1" not in icon:
        problems.append(f"{name}: the page icon is fetched from {icon} (fails offline)")
    problems += layout_problems(page, name)
    if name == "runs" and not saved_run_drawn(main):
        problems.append("runs: the saved run opened without its figure")
    expected_text = PAGE_TEXT.get(name)
    if expected_text and expected_text not in main.inner_text():
        problems.append(f"{name}: {expected_text!r} not shown")
    if len(PAGES) > 1:  # Streamlit shows the navigation only when there is more than one page
        nav = " ".join(texts(page, "stSidebarNavLink"))
        problems += [f"{name}: sidebar navigation lacks {entry.title!r}"
                     for entry in PAGES if entry.title not in nav]
    screenshot(page, ARTIFACTS, name)
    return problems


def test_every_page_renders_without_exception(app_url, page):
    model_expected = default_model_key() is not None
    start = time.monotonic()
    problems = []
    # Deep links first, on the fresh server; the default page is served at the root only
    # (/<its url_path> is "Page not found").
    for entry in [*PAGES[1:], PAGES[0]]:
        url = f"{app_url}/" if entry is PAGES[0] else f"{app_url}/{entry.url_path}"
        problems += visit(page, url, entry.url_path, model_expected)
        action = main_action(entry)
        if action and model_expected:
            problems += run_main_action(page, entry.url_path, action, ARTIFACTS)
    print(f"browser smoke run: {len(PAGES)} pages, model "
          f"{default_model_key() or 'none available offline'}, "
          f"{time.monotonic() - start:.1f} s; screenshots in {ARTIFACTS}")
    assert not problems, "\n".join(problems)


def test_every_page_fits_an_800_px_window(app_url, page):
    """Reference: the rule that nothing on a page is cut off (LAYOUT_CHECK_JS), at the narrowest
    width a laptop user splits a screen to."""
    if default_model_key() is None:
        pytest.skip("no model loads offline: the pages show only their 'can't load' message")
    page.set_viewport_size({"width": 800, "height": 1400})
    problems = []
    try:
        for entry in PAGES:
            url = f"{app_url}/" if entry is PAGES[0] else f"{app_url}/{entry.url_path}"
            name = f"{entry.url_path}-800px"
            page.goto(url, wait_until="domcontentloaded")
            wait_for_app_shell(page, entry.url_path, PAGES[0].url_path)
            problems += check_rendered(page, name, True) + layout_problems(page, name)
            action = main_action(entry)
            if action:
                problems += run_main_action(page, name, action, ARTIFACTS)
            screenshot(page, ARTIFACTS, name)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1600})
    assert not problems, "\n".join(problems)


def test_compare_by_model_fits_side_by_side_at_1400_px(app_url, page):
    """Reference: as above, in half-width columns (the item-10 report: "Vocabul... 1,..." at
    1400 px); both sides start on the same model, so its card is shown once (item 12)."""
    if default_model_key() is None:
        pytest.skip("no model loads offline: the pages show only their 'can't load' message")
    page.goto(f"{app_url}/", wait_until="domcontentloaded")
    wait_for_app_shell(page, PAGES[0].url_path, PAGES[0].url_path)
    sidebar = page.locator('[data-testid="stSidebar"]')
    click_and_wait(page, sidebar.get_by_text("Compare", exact=True))
    click_and_wait(page, sidebar.get_by_text("Second model", exact=True))
    problems = check_rendered(page, "home compare", True)
    cards = page.locator('[data-testid="stMetricLabel"]').filter(has_text="Layers").count()
    if cards != 1:
        problems.append(f"home compare: {cards} model cards shown for one model, expected 1")
    problems += layout_problems(page, "home compare")
    screenshot(page, ARTIFACTS, "home-compare-models-1400px")
    click_and_wait(page, sidebar.get_by_text("Compare", exact=True))  # leave the session as found
    assert not problems, "\n".join(problems)


def prompt_of_tokens(n_tokens: int) -> str:
    """A prompt the default model reads as exactly `n_tokens` tokens, its start token included
    (counted with that model's own tokenizer)."""
    from interp.models import load_model
    from pages.kit import DEFAULT_PROMPT

    model = load_model(default_model_key(), device="cpu")
    words = (DEFAULT_PROMPT.split() * n_tokens)
    for count in range(len(words), 0, -1):
        text = " ".join(words[:count])
        if model.to_tokens(text).shape[1] <= n_tokens:
            break
    if model.to_tokens(text).shape[1] != n_tokens:
        pytest.fail(f"could not make a prompt of exactly {n_tokens} tokens")
    return text


@contextlib.contextmanager
def sidebar_prompt(page, prompt: str):
    """The sidebar's Prompt box set to `prompt` for the block (it applies on blur), then put
    back as it was, so later tests see the default prompt."""
    box = page.locator('[data-testid="stSidebar"] textarea[aria-label="Prompt"]')
    original = box.input_value()
    try:
        box.fill(prompt)
        click_and_wait(page, page.locator('[data-testid="stMain"] h1').first)
        yield
    finally:
        box.fill(original)
        click_and_wait(page, page.locator('[data-testid="stMain"] h1').first)


def test_the_attention_page_runs_and_compares_on_a_64_token_prompt(app_url, page):
    """Reference: issue #11's browser line: the page (grid, views, compare) on a 64-token prompt
    with no exception shown (the prompt's length counted with the model's own tokenizer)."""
    if default_model_key() is None:
        pytest.skip("no model loads offline: the pages show only their 'can't load' message")
    entry = entry_for("attention")
    prompt = prompt_of_tokens(64)
    page.goto(f"{app_url}/{entry.url_path}", wait_until="domcontentloaded")
    wait_for_app_shell(page, entry.url_path, PAGES[0].url_path)
    sidebar = page.locator('[data-testid="stSidebar"]')
    with sidebar_prompt(page, prompt):
        problems = run_main_action(page, "attention-64-tokens", main_action(entry), ARTIFACTS)
        for tab in page.locator('[data-testid="stMain"] [role="tab"]').all():
            click_and_wait(page, tab)
            problems += check_rendered(page, f"attention-64-tokens tab {tab.inner_text()}", True)
        click_and_wait(page, sidebar.get_by_text("Compare", exact=True))
        problems += check_rendered(page, "attention-64-tokens compare", True)
        screenshot(page, ARTIFACTS, "attention-64-tokens-compare")
        click_and_wait(page, sidebar.get_by_text("Compare", exact=True))
    assert not problems, "\n".join(problems)


def test_the_patching_page_runs_the_induction_task_and_its_check(app_url, page):
    """Reference: issue #28's browser line: the induction task on the patching page, run and
    its "Induction check" tab opened, with no exception shown."""
    if default_model_key() is None:
        pytest.skip("no model loads offline: the pages show only their 'can't load' message")
    entry = entry_for("patching")
    page.goto(f"{app_url}/{entry.url_path}", wait_until="domcontentloaded")
    wait_for_app_shell(page, entry.url_path, PAGES[0].url_path)
    main = page.locator('[data-testid="stMain"]')
    click_and_wait(page, main.get_by_text("Induction (repeated tokens)", exact=True))
    problems = run_main_action(page, "patching-induction", main_action(entry), ARTIFACTS)
    click_and_wait(page, main.get_by_role("tab", name="Induction check"))
    problems += check_rendered(page, "patching-induction check", True)
    if main.get_by_text("Patching effect vs induction score").count() == 0:
        problems.append("patching-induction: the induction check's figure is not shown")
    screenshot(page, ARTIFACTS, "patching-induction-check")
    click_and_wait(page, main.get_by_text("Subject-verb agreement", exact=True))
    assert not problems, "\n".join(problems)


FIGURE_DATA_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot'))
    .map(plot => JSON.stringify((plot.data || []).map(trace => [trace.z, trace.y, trace.x,
                                                                  trace.text])))"""


def test_a_shared_link_gives_the_same_numbers_in_a_fresh_browser_session(app_url, page):
    """Reference: issue #25's link line. The first session runs the Logit lens on a typed
    prompt and copies its Share link (with the prompt); a fresh browser opens the link and runs
    the lens: every figure's data (read from Plotly in the page) is the same."""
    if default_model_key() is None:
        pytest.skip("no model loads offline: the pages show only their 'can't load' message")
    entry = entry_for("logit_lens")
    prompt = "The capital of France is the city of"
    page.goto(f"{app_url}/{entry.url_path}", wait_until="domcontentloaded")
    wait_for_app_shell(page, entry.url_path, PAGES[0].url_path)
    with sidebar_prompt(page, prompt):
        problems = run_main_action(page, "links-first", main_action(entry), ARTIFACTS)
        first = page.evaluate(FIGURE_DATA_JS)
        click_and_wait(page, page.get_by_role("button", name="Share link"))
        click_and_wait(page, page.get_by_text("Include the prompt", exact=True))
        link = page.locator("code").filter(has_text="model=").first.inner_text().strip()
        page.keyboard.press("Escape")
    assert "prompt=" in link, link
    # A new browser context: its own cookies and storage, so a new Streamlit session.
    fresh_context = page.context.browser.new_context(viewport={"width": 1400, "height": 1600})
    try:
        fresh = fresh_context.new_page()
        fresh.goto(link, wait_until="domcontentloaded")
        wait_for_app_shell(fresh, entry.url_path, PAGES[0].url_path)
        shown = fresh.locator('[data-testid="stSidebar"] textarea[aria-label="Prompt"]')
        assert shown.input_value() == prompt
        problems += run_main_action(fresh, "links-fresh", main_action(entry), ARTIFACTS)
        second = fresh.evaluate(FIGURE_DATA_JS)
    finally:
        fresh_context.close()
    assert not problems, "\n".join(problems)
    assert first and len(first[0]) > 100
    assert second == first
