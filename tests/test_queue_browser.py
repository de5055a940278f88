"""Two real browser sessions on one model: the second sees its place in the queue, then its own
result.

Session A presses "Run patching" (denoising); while A's analysis runs, session B, set to the
noising direction, presses it too. B's page must say "Waiting for the model: 1 analysis
ahead", and B's exported run must equal the same analysis computed here, in the test process,
with `interp` alone (not A's numbers: A patched the other direction). And a session that
presses the button again while its analysis runs gets that analysis, not a second one.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from bench.browser import CHROMIUM, CHROMIUM_ARGS, REPO, app_server
from bench.concurrency import Session, differences, wait_for_all
from interp import export
from interp import patching_tasks as tasks
from interp.models import load_model
from interp.patching import sweeps

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = REPO / "test-artifacts" / "browser"


def reference_export(direction: str) -> dict:
    """The page's default agreement run, computed with the library in this process."""
    model = load_model("demo", device="cpu")
    task = tasks.agreement_task(model, sentence=tasks.DEFAULT_AGREEMENT_SENTENCE,
                                corrupted_prefix=None)
    run = sweeps.run_sweeps(model, task, list(sweeps.DEFAULT_SWEEPS), direction,
                            sweeps.AUTO_METRIC, True)
    return json.loads(export.to_json(run))


@pytest.fixture(scope="module")
def app_and_browser():
    """A Streamlit server on the app and one headless Chromium, shared by this module."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with app_server(sys.executable, ARTIFACTS / "queue-streamlit.log") as (url, _process), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield url, browser
        finally:
            browser.close()


def test_a_second_session_sees_its_queue_position_then_its_own_result(app_and_browser):
    url, browser = app_and_browser
    missing: list[str] = []
    first = Session(browser, url, "denoising", missing)
    second = Session(browser, url, "noising", missing)
    first.click_run()
    first.page.get_by_text("Patching").first.wait_for(timeout=60_000)  # A is running
    second.click_run()
    deadline = time.monotonic() + 60
    while second.most_ahead_seen == 0 and first.arrived_at is None \
            and time.monotonic() < deadline:
        second.poll()
        first.poll()
        time.sleep(0.1)
    seen_ahead = second.most_ahead_seen
    wait_for_all([first, second])
    got = second.export_json()
    first.close()
    second.close()
    assert seen_ahead == 1
    assert differences(got, reference_export("noising")) == []
    assert missing == []


def test_clicking_run_again_while_it_runs_does_not_start_the_work_again(app_and_browser):
    """Reference: the progress bar of a run that restarts falls back to its start (the bench's
    `restarts` count), and the same analysis computed here with `interp` alone. Streamlit stops
    a script run on every click; the page must follow the analysis already at work instead."""
    url, browser = app_and_browser
    missing: list[str] = []
    session = Session(browser, url, "denoising", missing)
    session.click_run()
    deadline = time.monotonic() + 120
    while session.progress_seen < 0.3 and session.arrived_at is None \
            and time.monotonic() < deadline:
        session.poll()
        time.sleep(0.1)
    assert session.arrived_at is None, "the run ended before it could be clicked again"
    session.click_run()
    wait_for_all([session])
    got = session.export_json()
    session.close()
    assert session.restarts == 0
    assert differences(got, reference_export("denoising")) == []
    assert missing == []


def test_a_session_closed_while_waiting_never_runs(app_and_browser):
    """Reference: places counted by hand. A third session that presses the button after the
    waiting one closed its tab may have only the first analysis ahead of it (while that still
    runs) or none; had the closed session's analysis stayed queued, there would be one more."""
    url, browser = app_and_browser
    missing: list[str] = []
    first = Session(browser, url, "denoising", missing)
    third = Session(browser, url, "noising", missing)
    leaving = Session(browser, url, "noising", missing)
    first.click_run()
    first.page.get_by_text("Patching").first.wait_for(timeout=60_000)
    leaving.click_run()
    leaving.page.get_by_text("Waiting for the model").first.wait_for(timeout=60_000)
    leaving.close()  # the tab closes while its analysis waits
    time.sleep(2)  # the server notices the closed websocket
    first_still_running = not first.poll()
    third.click_run()
    wait_for_all([first, third])
    first.close()
    third.close()
    assert third.most_ahead_seen <= (1 if first_still_running else 0)
    assert missing == []
