"""Driving the app in a real browser: a `streamlit run` server on a free port and headless
Chromium under Playwright (Debian's /usr/bin/chromium; a browser is never downloaded).

Shared by the browser smoke test (tests/test_browser.py) and the deploy check (`bench deploy`).
A page is "done" when the app's root element says it is connected and its script is not running:
Streamlit sets those attributes itself, so no fixed sleeps are needed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Shown by the navigation script's sidebar: proof that a page ran inside the app, not alone.
SHELL_TEXT = "Model and input"
# What a page's main action (`PageEntry.main_action`) must show: a figure (a data-testid).
RESULT_TEST_ID = "stPlotlyChart"

SERVER_START_S = 90
PAGE_RUN_MS = 90_000
ACTION_RUN_MS = 120_000

APP = '[data-testid="stApp"]'
CONNECTED = f'{APP}[data-test-connection-state="CONNECTED"]'
IDLE = f'{APP}[data-test-script-state="notRunning"]'


class AppServerError(RuntimeError):
    """The Streamlit server exited or never became healthy; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AppServerError(f"streamlit exited with code {process.returncode} before "
                                 f"serving:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AppServerError(f"streamlit was not healthy at {url} after {SERVER_START_S} s:\n"
                         f"{log_path.read_text()[-3000:]}")


@contextlib.contextmanager
def app_server(python: str | Path, log_path: Path,
               extra_env: Mapping[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `streamlit run streamlit_app.py` offline with `python`; yield its base URL and process.

    The server is stopped on exit."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    command = [str(python), "-m", "streamlit", "run", "streamlit_app.py",
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false",
               # Full tracebacks in exception boxes, so a failure shows what went wrong.
               "--client.showErrorDetails", "full"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_health(process, f"http://127.0.0.1:{port}/_stcore/health", log_path)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def browser_page(chromium: Path = CHROMIUM) -> Iterator:
    """A Playwright page in headless Chromium; the browser is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1600})
        finally:
            browser.close()


def wait_until_idle(page, timeout_ms: int = PAGE_RUN_MS) -> None:
    """Wait until the app is connected and its script run (model loading included) has ended."""
    page.wait_for_selector(CONNECTED, state="attached", timeout=timeout_ms)
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def rerun_and_wait(page, start: Callable[[], object], timeout_ms: int = ACTION_RUN_MS) -> None:
    """Do `start` (a click, a key press) and wait for the script rerun it causes to finish."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start()
    try:  # a fast rerun may be over before we look, so not seeing it start is fine
        page.wait_for_selector(f'{APP}:not([data-test-script-state="notRunning"])',
                               state="attached", timeout=5_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def click_and_wait(page, target, timeout_ms: int = ACTION_RUN_MS) -> None:
    """Click a button (or any widget) and wait for the rerun it starts to finish."""
    rerun_and_wait(page, target.click, timeout_ms)


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


# Text the page cuts off: an ellipsis or clipped overflow on a text element, a selectbox whose
# chosen option is wider than its box, a Plotly title wider than its chart. Tables, charts' own
# text and the tab bar (it scrolls) are left out.
LAYOUT_CHECK_JS = """
() => {
  const found = [];
  const skip = '[data-testid="stDataFrame"], .js-plotly-plot, [role="tablist"]';
  const roots = document.querySelectorAll('[data-testid="stMain"], [data-testid="stSidebar"]');
  for (const root of roots) for (const el of root.querySelectorAll('*')) {
    if (el.clientWidth === 0 || el.scrollWidth <= el.clientWidth + 1 || el.closest(skip)) continue;
    const style = getComputedStyle(el);
    const clips = style.textOverflow === 'ellipsis' || style.overflowX === 'hidden'
                  || style.whiteSpace === 'nowrap';
    const text = el.matches('input[role="combobox"]') ? el.value
                 : (clips && el.children.length <= 1 ? el.textContent.trim() : '');
    if (text) {
      const holder = el.closest('[data-testid]');
      found.push(`${holder ? holder.dataset.testid : el.tagName} cuts off "${text.slice(0, 60)}"`);
    }
  }
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const svg = plot.querySelector('svg.main-svg'), title = plot.querySelector('.gtitle');
    if (!svg || !title) continue;
    const chart = svg.getBoundingClientRect(), box = title.getBoundingClientRect();
    if (box.right > chart.right + 1 || box.left < chart.left - 1) {
      found.push(`a chart's title is wider than the chart: "${title.textContent.slice(0, 60)}"`);
    }
  }
  return found;
}
"""


def layout_problems(page, where: str) -> list[str]:
    """Text the page as rendered now cuts off (see LAYOUT_CHECK_JS)."""
    return [f"{where}: {problem}" for problem in page.evaluate(LAYOUT_CHECK_JS)]


def screenshot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_app_shell(page, name: str, default_url_path: str) -> None:
    """A deep link on a fresh server is redirected through the navigation script and back (see
    pages.common.require_app_shell): between those runs the page is briefly blank and idle, so
    wait for the shell's sidebar, the page's own URL and title, then for its run to end."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f'[data-testid="stSidebar"] >> text={SHELL_TEXT}',
                               state="attached", timeout=30_000)
        if name != default_url_path:
            page.wait_for_url(f"**/{name}", timeout=30_000)
        page.wait_for_selector('[data-testid="stMain"] h1', state="attached", timeout=30_000)
    except PlaywrightTimeout:
        return  # the caller's checks report what is missing
    wait_until_idle(page, PAGE_RUN_MS)


def result_appears(page, test_id: str) -> bool:
    """Wait for the result element: a chart mounts a moment after the script run has ended."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f'[data-testid="{test_id}"]', state="attached", timeout=30_000)
    except PlaywrightTimeout:
        return False
    return True


def main_action(entry) -> tuple[str, str] | None:
    """(button label, result data-testid) of a page's main action (`PageEntry.main_action`),
    or None when the page has none."""
    label = getattr(entry, "main_action", None)
    return (label, RESULT_TEST_ID) if label else None


def run_main_action(page, url_path: str, action: tuple[str, str], folder: Path,
                    timeout_ms: int = ACTION_RUN_MS) -> list[str]:
    """Click the page's main button; its result must appear, with no exception or error."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    label, result_test_id = action
    # Not exact: a button's accessible name also holds its icon's name (e.g. "play_arrow").
    button = page.get_by_role("button", name=label)
    try:
        button.first.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        pass  # counted below
    if button.count() != 1:
        return [f"{url_path}: expected one {label!r} button, found {button.count()}"]
    click_and_wait(page, button, timeout_ms)
    where = f"{url_path} after {label!r}"
    appeared = result_appears(page, result_test_id)
    problems = check_rendered(page, where, model_expected=True)
    if not appeared:
        problems.append(f"{where}: no {result_test_id} element shows a result")
    page.wait_for_timeout(500)  # charts lay out their titles a moment after mounting
    problems += layout_problems(page, where)
    screenshot(page, folder, f"{url_path}-after-action")
    return problems
