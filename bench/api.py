"""The JSON API under load beside a browser session: `python -m bench api`.

Starts the app (`streamlit run streamlit_app.py`, headless, offline, the demo model) and first
sends each request of a mix of analyses alone (its answer is the reference). Then 8 clients
send 25 requests each from the mix at once while one Chromium session uses the dashboard's
Logit lens page, and a probe asks `/_stcore/health` every 0.1 s. Checked (issue #27): every
answer equals its request's alone answer, no 5xx, the health probe always under 0.2 s, a
dashboard rerun that needs no model work (switching the view) within 2x its idle time, and the
browser's own analysis served in its turn while the API is busy. Throughput and p50/p95 latency
are printed. The health probe also runs while the dashboard works alone (its own analysis and
reruns, no API), since Streamlit's own work on the event loop slows it too. On a machine shared
with other work the numbers are indicative only.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
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
    main = page.locator('[data-testid="stMain"]')
    started = time.perf_counter()
    rerun_and_wait(page, main.get_by_text(label, exact=True).click)
    return time.perf_counter() - started


def browser_analysis(page, screenshot: Path) -> tuple[bool, float]:
    """The browser's own analysis (Run logit lens): whether its chart came, and its seconds."""
    started = time.perf_counter()
    click_and_wait(page, page.get_by_role("button", name="Run logit lens"), 600_000)
    shown = result_appears(page, RESULT_TEST_ID)
    seconds = time.perf_counter() - started
    page.screenshot(path=str(screenshot), full_page=True)
    return shown, seconds


def run() -> list[Entry]:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    with app_server(sys.executable, work / "streamlit.log", SERVER_ENV) as (url, _process), \
            sync_playwright() as playwright:
        base = url + "/api"
        with httpx.Client(base_url=base, timeout=600) as client:
            alone = [post(client, path, body) for path, body in MIX]
        bad = [MIX[i][0] for i, (status, _, _) in enumerate(alone) if status != 200]
        if bad:
            raise RuntimeError(f"requests failed alone: {bad}")
        references = [payload for _, payload, _ in alone]
        alone_s = {MIX[i][0]: round(s, 3) for i, (_, _, s) in enumerate(alone)}
        print(f"api: alone {alone_s}", flush=True)

        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{url}/logit_lens", wait_until="domcontentloaded")
            wait_until_idle(page)
            idle_reruns = [view_switch(page, label) for label in ("Table", "Heatmap") * 2]
            # The dashboard alone, for comparison: its own analysis and reruns, no API load.
            quiet = HealthProbe(url + "/_stcore/health")
            alone_analysis_s = browser_analysis(page, work / "alone.png")[1]
            quiet_times, _ = quiet.stop()
            probe = HealthProbe(url + "/_stcore/health")
            results: list = []
            clients = [threading.Thread(target=client_run, args=(base, i, references, results))
                       for i in range(CLIENTS)]
            started = time.perf_counter()
            for thread in clients:
                thread.start()
            time.sleep(1.0)  # the API's work is queued before the browser asks
            loaded_reruns = [view_switch(page, label) for label in ("Table", "Heatmap") * 2]
            shown, browser_analysis_s = browser_analysis(page, work / "loaded.png")
            for thread in clients:
                thread.join()
            wall = time.perf_counter() - started
            health_times, health_failures = probe.stop()
        finally:
            browser.close()

    latencies = sorted(seconds for _, seconds, _ in results)
    p50 = statistics.median(latencies)
    p95 = percentile(latencies, 0.95)
    server_errors = sum(status >= 500 for status, _, _ in results)
    wrong = sum(is_wrong for _, _, is_wrong in results)
    health_max = max(health_times)
    health_p95 = percentile(health_times, 0.95)
    quiet_p95 = percentile(quiet_times, 0.95)
    idle_rerun, loaded_rerun = statistics.median(idle_reruns), statistics.median(loaded_reruns)
    met = {"equal": wrong == 0, "no 5xx": server_errors == 0,
           "health": health_max < HEALTH_LIMIT_S and not health_failures,
           "rerun": loaded_rerun <= RERUN_FACTOR * idle_rerun, "browser analysis": shown}
    verdict = ", ".join(f"{name} {'OK' if ok else 'MISSED'}" for name, ok in met.items())
    print(f"api: {len(results)} requests in {wall:.1f} s ({len(results) / wall:.2f}/s), "
          f"p50 {p50:.3f} s, p95 {p95:.3f} s; wrong {wrong}, 5xx {server_errors}; "
          f"/_stcore/health max {health_max:.3f} s, p95 {health_p95:.3f} s over "
          f"{len(health_times)} probes ({health_failures} failed); with the dashboard alone "
          f"(its analysis and reruns, no API load) max {max(quiet_times):.3f} s, p95 "
          f"{quiet_p95:.3f} s; rerun idle {idle_rerun:.2f} s, under load "
          f"{loaded_rerun:.2f} s; browser's analysis {browser_analysis_s:.1f} s (alone "
          f"{alone_analysis_s:.1f} s); {verdict}",
          flush=True)
    note = f"{CLIENTS} clients x {REQUESTS_PER_CLIENT} mixed requests, demo model; {verdict}"
    return [
        entry("api: throughput (requests/s)", len(results) / wall, note=note),
        entry("api: p50 latency (s)", p50, note=f"p95 {p95:.3f} s"),
        entry("api: /_stcore/health slowest under load (s)", health_max,
              note=f"target < {HEALTH_LIMIT_S} s; p95 {health_p95:.3f} s over "
                   f"{len(health_times)} probes; the dashboard alone: max "
                   f"{max(quiet_times):.3f} s, p95 {quiet_p95:.3f} s"),
        entry("api: dashboard rerun under load (s)", loaded_rerun,
              note=f"idle {idle_rerun:.2f} s; target <= {RERUN_FACTOR:g}x idle"),
        entry("api: browser's own analysis under load (s)", browser_analysis_s,
              note=f"chart shown: {shown}; alone {alone_analysis_s:.1f} s; screenshots in "
                   f"{work}"),
    ]
