"""Real-browser smoke test: every registered page renders in headless Chromium without an exception.

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

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pages.common import PAGES, default_model_key

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Text each page must show (pages not listed must show some title).
PAGE_TEXT = {"home": "GPT-2 Interpretability Workbench"}
# Shown by streamlit_app.py's sidebar: proof that a page ran inside the app, not on its own.
SHELL_TEXT = "Model and input"
# What a page's main action (PageEntry.main_action) must show: a figure (a Streamlit
# data-testid). Checked whenever a model can load.
RESULT_TEST_ID = "stPlotlyChart"

SERVER_START_S = 90
PAGE_RUN_MS = 90_000
ACTION_RUN_MS = 120_000

APP = '[data-testid="stApp"]'
CONNECTED = f'{APP}[data-test-connection-state="CONNECTED"]'
IDLE = f'{APP}[data-test-script-state="notRunning"]'


def require_browser() -> bool:
    return os.environ.get("WORKBENCH_REQUIRE_BROWSER", "") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with code {process.returncode} before serving:\n"
                        f"{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit was not healthy at {url} after {SERVER_START_S} s:\n"
                f"{log_path.read_text()[-3000:]}")


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
    port = free_port()
    log_path = ARTIFACTS / "streamlit.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false",
               # Full tracebacks in exception boxes, so a failure below shows what went wrong.
               "--client.showErrorDetails", "full"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_health(process, f"http://127.0.0.1:{port}/_stcore/health", log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser_page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            yield page
        finally:
            browser.close()


def wait_until_idle(page, timeout_ms: int) -> None:
    """Wait until the app is connected and its script run (model loading included) has ended."""
    page.wait_for_selector(CONNECTED, state="attached", timeout=timeout_ms)
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def click_and_wait(page, button) -> None:
    """Click a button and wait for the rerun it starts to finish."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button.click()
    try:  # a fast rerun may be over before we look, so not seeing it start is fine
        page.wait_for_selector(f'{APP}:not([data-test-script-state="notRunning"])',
                               state="attached", timeout=5_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(IDLE, state="attached", timeout=ACTION_RUN_MS)


def texts(page, test_id: str) -> list[str]:
    return page.locator(f'[data-testid="{test_id}"]').all_inner_texts()


def check_rendered(page, where: str, model_expected: bool) -> list[str]:
    """What is wrong with the page as rendered now (an empty list when nothing is)."""
    problems = [f"{where}: exception shown:\n{text}" for text in texts(page, "stException")]
    if page.get_by_text("Page not found", exact=True).count():
        problems.append(f"{where}: Streamlit says 'Page not found' (wrong url_path?)")
    errors = texts(page, "stAlertContentError")
    if model_expected:
        # With a model available, a page's defaults must work: an error box is a failure too.
        problems += [f"{where}: error shown: {text}" for text in errors]
    elif not errors:
        problems.append(f"{where}: no model can load offline, yet no error message explains it")
    return problems


def screenshot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_app_shell(page, name: str) -> None:
    """A deep link on a fresh server is redirected through streamlit_app.py and back (see
    pages.common.require_app_shell): between those runs the page is briefly blank and idle, so
    wait for the shell's sidebar, the page's own URL and title, then for its run to end."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f'[data-testid="stSidebar"] >> text={SHELL_TEXT}',
                               state="attached", timeout=30_000)
        if name != PAGES[0].url_path:
            page.wait_for_url(f"**/{name}", timeout=30_000)
        page.wait_for_selector('[data-testid="stMain"] h1', state="attached", timeout=30_000)
    except PlaywrightTimeout:
        return  # the checks in visit() report what is missing
    wait_until_idle(page, PAGE_RUN_MS)


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


def visit(page, url: str, name: str, model_expected: bool) -> list[str]:
    """Open one page, wait for its run to end, check it and save a screenshot named `name`."""
    page.goto(url, wait_until="domcontentloaded")
    wait_until_idle(page, PAGE_RUN_MS)
    wait_for_app_shell(page, name)
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
    expected_text = PAGE_TEXT.get(name)
    if expected_text and expected_text not in main.inner_text():
        problems.append(f"{name}: {expected_text!r} not shown")
    if len(PAGES) > 1:  # Streamlit shows the navigation only when there is more than one page
        nav = " ".join(texts(page, "stSidebarNavLink"))
        problems += [f"{name}: sidebar navigation lacks {entry.title!r}"
                     for entry in PAGES if entry.title not in nav]
    screenshot(page, name)
    return problems


def result_appears(page, test_id: str) -> bool:
    """Wait for the result element: a chart mounts a moment after the script run has ended."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f'[data-testid="{test_id}"]', state="attached", timeout=30_000)
    except PlaywrightTimeout:
        return False
    return True


def run_default_action(page, entry) -> list[str]:
    """Click the page's main button; its result must appear, with no exception or error."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url_path, label, result_test_id = entry.url_path, entry.main_action, RESULT_TEST_ID
    # Not exact: a button's accessible name also holds its icon's name (e.g. "play_arrow").
    button = page.get_by_role("button", name=label)
    try:
        button.first.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        pass  # counted below
    if button.count() != 1:
        return [f"{url_path}: expected one {label!r} button, found {button.count()}"]
    click_and_wait(page, button)
    where = f"{url_path} after {label!r}"
    appeared = result_appears(page, result_test_id)
    problems = check_rendered(page, where, model_expected=True)
    if not appeared:
        problems.append(f"{where}: no {result_test_id} element shows a result")
    screenshot(page, f"{url_path}-after-action")
    return problems


def test_every_page_renders_without_exception(app_url, browser_page):
    page = browser_page
    model_expected = default_model_key() is not None
    start = time.monotonic()
    problems = []
    # Deep links first, on the fresh server; the default page is served at the root only
    # (/<its url_path> is "Page not found").
    for entry in [*PAGES[1:], PAGES[0]]:
        url = f"{app_url}/" if entry is PAGES[0] else f"{app_url}/{entry.url_path}"
        problems += visit(page, url, entry.url_path, model_expected)
        if entry.main_action is not None and model_expected:
            problems += run_default_action(page, entry)
    print(f"browser smoke run: {len(PAGES)} pages, model "
          f"{default_model_key() or 'none available offline'}, "
          f"{time.monotonic() - start:.1f} s; screenshots in {ARTIFACTS}")
    assert not problems, "\n".join(problems)
