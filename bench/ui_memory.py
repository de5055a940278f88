"""Server memory over a long session: flat across reruns and analyses, returned when it ends.

Starts the app (`streamlit run`, headless, offline, the demo model) and drives one Chromium
session: a warm-up (each page opened, two patching runs), then 20 analyses on the patching page
(each with other inputs, so each computes: the direction alternates and the IOI seed changes)
and 50 reruns that compute nothing (Streamlit's "rerun" key). The resident memory (RSS) of the
server's process tree is sampled after the warm-up, after the analyses, after the reruns, and
30 s after the browser has closed (the session ends when its websocket does; Streamlit drops it
after that). Target (issue #8, item 17): growth after warm-up < 50 MB, and after the session ends
RSS back within 50 MB of the warm-up value.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.browser import (
    CHROMIUM,
    app_server,
    browser_page,
    click_and_wait,
    rerun_and_wait,
    wait_until_idle,
)
from bench.deploy import tree_rss_bytes
from bench.harness import Entry, entry

ANALYSES = 20
RERUNS = 50
GROWTH_TARGET_MB = 50.0
SETTLE_S = 30.0
MB = 1e6


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    wait_until_idle(page)


def patching_run(page, seed: int, direction: str) -> None:
    """One IOI patching run with this seed and direction (new inputs, so it computes)."""
    main = page.locator('[data-testid="stMain"]')
    seed_box = main.get_by_label("Seed")
    click_and_wait(page, main.get_by_text(direction, exact=True))
    rerun_and_wait(page, lambda: (seed_box.fill(str(seed)), seed_box.press("Enter")))
    click_and_wait(page, page.get_by_role("button", name="Run patching"))


def run() -> list[Entry]:
    work = Path(tempfile.mkdtemp(prefix="bench-ui-memory-"))
    with app_server(sys.executable, work / "streamlit.log") as (url, process):
        server = psutil.Process(process.pid)

        def rss_mb() -> float:
            gc.collect()
            return tree_rss_bytes(server) / MB

        with browser_page(CHROMIUM) as page:
            open_page(page, f"{url}/")
            open_page(page, f"{url}/patching")
            click_and_wait(page, page.locator('[data-testid="stMain"]').get_by_text(
                "Indirect object (IOI)", exact=True))
            for seed in (100, 101):
                patching_run(page, seed, "denoising")
            warm = rss_mb()
            print(f"ui_memory: after warm-up {warm:.0f} MB", flush=True)
            for index in range(ANALYSES):
                patching_run(page, index, ("noising", "denoising")[index % 2])
            after_analyses = rss_mb()
            print(f"ui_memory: after {ANALYSES} analyses {after_analyses:.0f} MB", flush=True)
            page.locator('[data-testid="stMain"] h1').first.click()  # "r" must not go to a box
            for _ in range(RERUNS):
                rerun_and_wait(page, lambda: page.keyboard.press("r"))
            after_reruns = rss_mb()
            print(f"ui_memory: after {RERUNS} reruns {after_reruns:.0f} MB", flush=True)
        time.sleep(SETTLE_S)
        closed = rss_mb()
        print(f"ui_memory: {SETTLE_S:.0f} s after the browser closed {closed:.0f} MB", flush=True)

    growth = after_reruns - warm
    kept = closed - warm
    verdict = ("OK" if growth < GROWTH_TARGET_MB and kept < GROWTH_TARGET_MB else "MISSED")
    note = (f"demo model; RSS after warm-up {warm:.0f} MB, after {ANALYSES} analyses "
            f"{after_analyses:.0f} MB, after {RERUNS} reruns {after_reruns:.0f} MB, "
            f"{SETTLE_S:.0f} s after the session closed {closed:.0f} MB; target growth < "
            f"{GROWTH_TARGET_MB:.0f} MB: {verdict}")
    return [entry("ui_memory: RSS growth over a session (MB)", growth, note=note),
            entry("ui_memory: RSS kept after the session ended (MB)", kept, note=note)]
