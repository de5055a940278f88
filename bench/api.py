"""The JSON API under load beside a browser session: `python -m bench api`.

Starts the app (`streamlit run streamlit_app.py`, headless, offline, the demo model) and first
sends each request of a mix of analyses alone (its answer is the reference). Then, while a
probe in its own process asks `/_stcore/health` every 0.1 s: 8 clients send 25 requests each
from the mix at once with no browser (the API alone); one Chromium session on the Logit lens
page runs its analysis with no API load (the dashboard alone); and the 8 x 25 again while that
session reruns and runs its analysis (both). Checked (issue #27): every answer equals its
request's alone answer, no 5xx, the health probe under 0.2 s, a dashboard rerun that needs no
model work (switching the view) within 2x its idle time, and the browser's own analysis served
in its turn while the API is busy. Throughput and p50/p95 latency are printed. On a machine
shared with other work the numbers are indicative only.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    RESULT_TEST_ID,
    app_server,
    click_and_wait,
    rerun_and_wait,
    result_appears,
    wait_until_idle,
)
from bench.concurrency import differences
from bench.harness import Entry, entry

CLIENTS = 8
REQUESTS_PER_CLIENT = 25
HEALTH_LIMIT_S = 0.2
RERUN_FACTOR = 2.0
PROBE_EVERY_S = 0.1
PROMPTS = ("The cat sat on the", "When Mary and John went to the store, John gave a drink to")
MIX = [(path, body) for prompt in PROMPTS for path, body in (
    ("logit_lens", {"prompt": prompt, "k": 3}),
    ("attention", {"prompt": prompt}),
    ("dla", {"prompt": prompt}),
    ("head_scores", {"prompt": prompt, "repeat_length": 8}),
)] + [
    ("chat", {"messages": [{"role": "user", "content": "Hello there."}], "temperature": 0,
              "max_new_tokens": 6, "k": 3}),
    ("predict", {"sentence": "The keys to the cabinet are on the table"}),
]
SERVER_ENV = {"WORKBENCH_API_REQUESTS_PER_MINUTE": "100000", "WORKBENCH_QUEUE_LENGTH": "32",
              "WORKBENCH_ALLOW_CUSTOM_MODELS": "false"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def post(client: httpx.Client, path: str, body: dict) -> tuple[int, object, float]:
    started = time.perf_counter()
    response = client.post(f"/{path}", json={"model": "demo", **body})
    seconds = time.perf_counter() - started
    payload = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else response.text
    return response.status_code, payload, seconds


def probe_health(url: str) -> None:
    """In its own process (the bench's threads would delay its clock): GET `url` every
    PROBE_EVERY_S until stdin closes, printing each answer's seconds (negative: it failed)."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            seconds = time.perf_counter() - started
            print(seconds if ok else -seconds, flush=True)
            stop.wait(PROBE_EVERY_S)


class HealthProbe:
    """`probe_health` in a child process; `stop()` returns the answers' times and failures."""

    def __init__(self, url: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from bench.api import probe_health; probe_health({url!r})"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[list[float], int]:
        output, _ = self.process.communicate("", timeout=30)
        values = [float(line) for line in output.split()]
        return [abs(v) for v in values], sum(v < 0 for v in values)


def client_run(base: str, index: int, references: dict, results: list) -> None:
    with httpx.Client(base_url=base, timeout=600) as client:
        for number in range(REQUESTS_PER_CLIENT):
            slot = (index + number) % len(MIX)
            status, payload, seconds = post(client, *MIX[slot])
            wrong = status != 200 or bool(differences(payload, references[slot]))
            results.append((status, seconds, wrong))


def view_switch(page, label: str) -> float:
    """One rerun that needs no model work: switch the Logit lens page's view; its seconds."""
    # The option of the View radio itself: the page's "How to read this" text names the views too.
    options = page.locator('[data-testid="stMain"] [data-testid="stRadio"]')
    started = time.perf_counter()
    rerun_and_wait(page, options.get_by_text(label, exact=True).click)
    return time.perf_counter() - started


def browser_analysis(page, screenshot: Path, colour: str) -> tuple[bool, float]:
    """The browser's own analysis (Run logit lens, colouring by `colour`: new inputs each time,
    so the page can't show its kept result): whether its chart came, and its seconds."""
    field = page.get_by_role("textbox", name="Colour by token (optional)")
    rerun_and_wait(page, lambda: (field.fill(colour), field.press("Enter")))
    started = time.perf_counter()
    click_and_wait(page, page.get_by_role("button", name="Run logit lens"), 600_000)
    shown = result_appears(page, RESULT_TEST_ID)
    seconds = time.perf_counter() - started
    page.screenshot(path=str(screenshot), full_page=True)
    return shown, seconds


@dataclass
class Round:
    """One round of CLIENTS x REQUESTS_PER_CLIENT requests, and the health probe meanwhile."""

    results: list = field(default_factory=list)  # (status, seconds, wrong)
    wall_s: float = 0.0
    health_s: list = field(default_factory=list)
    health_failures: int = 0

    def start(self, base: str, references: list) -> None:
        self.threads = [threading.Thread(target=client_run, args=(base, i, references,
                                                                   self.results))
                        for i in range(CLIENTS)]
        self.started = time.perf_counter()
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.wall_s = time.perf_counter() - self.started

    def summary(self) -> dict:
        latencies = [seconds for _, seconds, _ in self.results]
        return {"n": len(self.results), "per_s": len(self.results) / self.wall_s,
                "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
                "wrong": sum(w for _, _, w in self.results),
                "5xx": sum(status >= 500 for status, _, _ in self.results),
                "health_max": max(self.health_s), "health_p95": percentile(self.health_s, 0.95),
                "health_failures": self.health_failures}


def describe(name: str, summary: dict) -> str:
    return (f"{name}: {summary['n']} requests, {summary['per_s']:.2f}/s, p50 "
            f"{summary['p50']:.3f} s, p95 {summary['p95']:.3f} s, wrong {summary['wrong']}, "
            f"5xx {summary['5xx']}; /_stcore/health max {summary['health_max']:.3f} s, p95 "
            f"{summary['health_p95']:.3f} s ({summary['health_failures']} failed)")


def run() -> list[Entry]:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    with app_server(sys.executable, work / "streamlit.log", SERVER_ENV) as (url, _process), \
            sync_playwright() as playwright:
        base, health_url = url + "/api", url + "/_stcore/health"
        with httpx.Client(base_url=base, timeout=600) as client:
            alone = [post(client, path, body) for path, body in MIX]
        bad = [MIX[i][0] for i, (status, _, _) in enumerate(alone) if status != 200]
        if bad:
            raise RuntimeError(f"requests failed alone: {bad}")
        references = [payload for _, payload, _ in alone]
        print(f"api: alone {({MIX[i][0]: round(s, 3) for i, (_, _, s) in enumerate(alone)})}",
              flush=True)

        # 1. The API alone: its load, and the event loop meanwhile.
        api_only = Round()
        probe = HealthProbe(health_url)
        api_only.start(base, references)
        api_only.join()
        api_only.health_s, api_only.health_failures = probe.stop()

        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{url}/logit_lens", wait_until="domcontentloaded")
            wait_until_idle(page)
            idle_reruns = [view_switch(page, label) for label in ("Table", "Heatmap") * 2]
            # 2. The dashboard alone: its own analysis and reruns, no API load.
            probe = HealthProbe(health_url)
            alone_analysis_s = browser_analysis(page, work / "alone.png", " cat")[1]
            quiet_s, _ = probe.stop()
            # 3. Both: the API's round while the browser reruns and runs its analysis.
            both = Round()
            probe = HealthProbe(health_url)
            both.start(base, references)
            time.sleep(1.0)  # the API's work is queued before the browser asks
            loaded_reruns = [view_switch(page, label) for label in ("Table", "Heatmap") * 2]
            shown, browser_analysis_s = browser_analysis(page, work / "loaded.png", " the")
            both.join()
            both.health_s, both.health_failures = probe.stop()
        finally:
            browser.close()

    first, second = api_only.summary(), both.summary()
    idle_rerun, loaded_rerun = statistics.median(idle_reruns), statistics.median(loaded_reruns)
    met = {"equal": first["wrong"] + second["wrong"] == 0,
           "no 5xx": first["5xx"] + second["5xx"] == 0,
           "health (API alone)": first["health_max"] < HEALTH_LIMIT_S,
           "health (API + browser)": second["health_max"] < HEALTH_LIMIT_S,
           "rerun": loaded_rerun <= RERUN_FACTOR * idle_rerun, "browser analysis": shown}
    verdict = ", ".join(f"{name} {'OK' if ok else 'MISSED'}" for name, ok in met.items())
    print(describe("api: API alone", first), flush=True)
    print(describe("api: API + browser", second) + f"; the dashboard alone: health max "
          f"{max(quiet_s):.3f} s, p95 {percentile(quiet_s, 0.95):.3f} s; rerun idle "
          f"{idle_rerun:.2f} s, under load {loaded_rerun:.2f} s; the browser's analysis "
          f"{browser_analysis_s:.1f} s under load, {alone_analysis_s:.1f} s alone", flush=True)
    print(f"api: {verdict}", flush=True)
    note = f"{CLIENTS} clients x {REQUESTS_PER_CLIENT} mixed requests, demo model; {verdict}"
    return [
        entry("api: throughput, API alone (requests/s)", first["per_s"], note=note),
        entry("api: p50 latency, API alone (s)", first["p50"], note=f"p95 {first['p95']:.3f} s"),
        entry("api: throughput beside a browser (requests/s)", second["per_s"],
              note=f"p50 {second['p50']:.3f} s, p95 {second['p95']:.3f} s"),
        entry("api: /_stcore/health slowest, API alone (s)", first["health_max"],
              note=f"target < {HEALTH_LIMIT_S} s; p95 {first['health_p95']:.3f} s"),
        entry("api: /_stcore/health slowest, API + browser (s)", second["health_max"],
              note=f"p95 {second['health_p95']:.3f} s; the dashboard alone: max "
                   f"{max(quiet_s):.3f} s"),
        entry("api: dashboard rerun under load (s)", loaded_rerun,
              note=f"idle {idle_rerun:.2f} s; target <= {RERUN_FACTOR:g}x idle"),
        entry("api: browser's own analysis under load (s)", browser_analysis_s,
              note=f"chart shown: {shown}; alone {alone_analysis_s:.1f} s; screenshots in "
                   f"{work}"),
    ]
