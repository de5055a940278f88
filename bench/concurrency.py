"""Many sessions, one model: k browser sessions press "Run patching" at once on the demo model.

Starts the app (`streamlit run`, headless, offline, the demo model) and opens one Chromium
context per session on the patching page, half of them set to the noising direction so that a
result handed to the wrong session would show. First each direction runs alone (its time, and
its JSON export as the reference); then 4 and then 8 sessions click within a fraction of a
second. Checked (issue #26): every session's exported JSON equals its direction's alone run;
results arrive in click order; no session waits longer than the sum of every session's alone
time plus 25%; no download answers 404; and 30 s after the sessions close the server's RSS is
back within 100 MB of its value before them. While they wait, the pages must say how many
analyses are ahead (the most each session was shown is recorded).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.browser import CHROMIUM, CHROMIUM_ARGS, app_server, click_and_wait, wait_until_idle
from bench.deploy import tree_rss_bytes
from bench.harness import Entry, entry

SESSION_COUNTS = (4, 8)
DIRECTIONS = ("denoising", "noising")
WAIT_FACTOR = 1.25
RSS_TARGET_MB = 100.0
SETTLE_S = 30.0
RESULT_TIMEOUT_S = 600.0
WAIT_TEXT = "Waiting for the model"
RESULT = '[data-testid="stMain"] [data-testid="stPlotlyChart"]'
MB = 1e6


class Session:
    """One browser context on the patching page, its direction chosen, and what it saw."""

    def __init__(self, browser, url: str, direction: str, missing: list[str]):
        self.direction = direction
        self.context = browser.new_context(viewport={"width": 1400, "height": 1600},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        # Files (downloads included) are served under /media; the frontend's 404 probes of
        # /<page>/_stcore/... while it finds the server's base path are not downloads.
        self.page.on("response", lambda response: response.status == 404
                     and "/media/" in response.url and missing.append(response.url))
        self.page.goto(f"{url}/patching", wait_until="domcontentloaded")
        wait_until_idle(self.page)
        if direction != DIRECTIONS[0]:
            main = self.page.locator('[data-testid="stMain"]')
            click_and_wait(self.page, main.get_by_text(direction, exact=True))
        self.clicked_at = self.arrived_at = self.computing_at = None
        self.most_ahead_seen = 0
        self.progress_seen = 0.0
        self.restarts = 0  # times its progress bar went back to the start: repeated work

    def click_run(self) -> None:
        self.page.get_by_role("button", name="Run patching").click(no_wait_after=True)
        self.clicked_at = time.perf_counter()

    def poll(self) -> bool:
        """Note what the page shows now; True once its result is there and its run has ended."""
        if self.arrived_at is not None:
            return True
        waiting = self.page.get_by_text(WAIT_TEXT).all_inner_texts()
        for text in waiting:
            words = text.split(":", 1)[-1].split()
            if words and words[0].isdigit():
                self.most_ahead_seen = max(self.most_ahead_seen, int(words[0]))
        for value in self.page.locator('[role="progressbar"]').evaluate_all(
                "bars => bars.map(bar => Number(bar.getAttribute('aria-valuenow') || 0))"):
            fraction = value / 100  # the bar reports percent
            if fraction > 0 and self.computing_at is None:
                self.computing_at = time.perf_counter()
            if fraction + 0.2 < self.progress_seen:
                self.restarts += 1
            self.progress_seen = fraction
        idle = self.page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
        if not waiting and self.page.locator(RESULT).count() and idle.count():
            self.arrived_at = time.perf_counter()
        return self.arrived_at is not None

    def export_json(self) -> dict:
        """The whole run's JSON export (the page's last Export menu), downloaded as a user would."""
        self.page.get_by_role("button", name="Export").last.click()
        with self.page.expect_download(timeout=60_000) as download:
            self.page.get_by_role("button", name="JSON").last.click()
        return json.loads(Path(download.value.path()).read_text(encoding="utf-8"))

    def close(self) -> None:
        self.context.close()


def wait_for_all(sessions: list[Session], timeout_s: float = RESULT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not all([s.poll() for s in sessions]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(s.arrived_at is None for s in sessions)} sessions had no "
                               f"result after {timeout_s:.0f} s")
        time.sleep(0.2)


def differences(got, expected, where: str = "", tolerance: float = 1e-5) -> list[str]:
    """Where two exported JSON values differ (numbers within `tolerance`)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if got.keys() != expected.keys():
            return [f"{where}: keys differ"]
        return [d for k in expected for d in differences(got[k], expected[k], f"{where}.{k}",
                                                           tolerance)]
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return [f"{where}: lengths differ"]
        return [d for i, (g, e) in enumerate(zip(got, expected, strict=True))
                for d in differences(g, e, f"{where}[{i}]", tolerance)]
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return [] if abs(got - expected) <= tolerance * max(1.0, abs(expected)) else [where]
    return [] if got == expected else [where]


def alone_runs(browser, url: str, missing: list[str]) -> tuple[dict, dict]:
    """Each direction run by one session with the model to itself: seconds, and its export."""
    seconds, exports = {}, {}
    for direction in DIRECTIONS:
        session = Session(browser, url, direction, missing)
        session.click_run()
        wait_for_all([session])
        seconds[direction] = session.arrived_at - session.clicked_at
        exports[direction] = session.export_json()
        session.close()
    return seconds, exports


def concurrent_round(browser, url: str, k: int, alone_s: dict, references: dict,
                     missing: list[str]) -> dict:
    sessions = [Session(browser, url, DIRECTIONS[i % 2], missing) for i in range(k)]
    for session in sessions:
        session.click_run()
    wait_for_all(sessions)
    wrong = [i for i, s in enumerate(sessions)
             if differences(s.export_json(), references[s.direction])]
    waits = [s.arrived_at - s.clicked_at for s in sessions]
    arrival_order = sorted(range(k), key=lambda i: sessions[i].arrived_at)
    bound = WAIT_FACTOR * sum(alone_s[s.direction] for s in sessions)
    for session in sessions:
        session.close()
    started = [None if s.computing_at is None else round(s.computing_at - s.clicked_at, 1)
               for s in sessions]
    return {"k": k, "waits": waits, "bound": bound, "wrong": wrong, "computing_after": started,
            "restarts": [s.restarts for s in sessions],
            "in_click_order": arrival_order == list(range(k)), "arrival_order": arrival_order,
            "most_ahead_seen": [s.most_ahead_seen for s in sessions]}


def run() -> list[Entry]:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    missing: list[str] = []
    rounds = []
    with app_server(sys.executable, work / "streamlit.log") as (url, process), \
            sync_playwright() as playwright:
        server = psutil.Process(process.pid)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            alone_s, references = alone_runs(browser, url, missing)
            print(f"concurrency: alone {', '.join(f'{d} {s:.1f} s' for d, s in alone_s.items())}",
                  flush=True)
            before_mb = tree_rss_bytes(server) / MB
            for k in SESSION_COUNTS:
                rounds.append(concurrent_round(browser, url, k, alone_s, references, missing))
                print(f"concurrency: {rounds[-1]}", flush=True)
        finally:
            browser.close()
        time.sleep(SETTLE_S)
        after_mb = tree_rss_bytes(server) / MB

    entries = []
    for result in rounds:
        k, waits = result["k"], result["waits"]
        met = (not result["wrong"] and result["in_click_order"] and max(waits) <= result["bound"]
               and not missing)
        note = (f"{k} sessions, demo model; waits {', '.join(f'{w:.1f}' for w in waits)} s "
                f"(click order), bound {result['bound']:.1f} s; arrival order "
                f"{result['arrival_order']}; wrong results {result['wrong']}; most analyses "
                f"ahead shown {result['most_ahead_seen']}; download 404s {len(missing)}: "
                f"{'OK' if met else 'MISSED'}")
        entries.append(entry(f"concurrency: {k} sessions, longest wait (s)", max(waits),
                             note=note))
    kept = after_mb - before_mb
    entries.append(entry("concurrency: RSS kept 30 s after the sessions closed (MB)", kept,
                         note=f"before {before_mb:.0f} MB, after {after_mb:.0f} MB; target "
                              f"< {RSS_TARGET_MB:.0f} MB: "
                              f"{'OK' if kept < RSS_TARGET_MB else 'MISSED'}"))
    return entries
