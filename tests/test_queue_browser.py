"""Two real browser sessions on one model: the second sees its place in the queue, then its own
result.

Session A presses "Run patching" (denoising); while A's analysis runs, session B, set to the
noising direction, presses it too. B's page must say "Waiting for the model: 1 analysis
ahead", and B's exported run must equal the same analysis computed here, in the test process,
with `interp` alone (not A's numbers: A patched the other direction).
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


def test_a_second_session_sees_its_queue_position_then_its_own_result():
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    with app_server(sys.executable, ARTIFACTS / "queue-streamlit.log") as (url, _process), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
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
        finally:
            browser.close()
    assert seen_ahead == 1
    assert differences(got, reference_export("noising")) == []
    assert missing == []
