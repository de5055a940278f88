"""Deploy check: does the app run from requirements.txt alone, inside Community Cloud's limits?

It builds a fresh virtual environment from `requirements.txt` only (what Community Cloud and
Spaces install), checks it holds the CPU build of torch and no `nvidia-*` package, and reports its
size. Then it runs the app from that environment (`streamlit run`, headless, offline) and opens
every registered page in Chromium, running each page's main action, while sampling the resident
memory (RSS) of the server's process tree: with a GPT-2-small-shaped model (random weights, loaded
as a local folder through the sidebar's "Other"), with the demo model, and with compare-by-model
on (two GPT-2-small-shaped models). Peaks are printed against Community Cloud's ~2.7 GB.
A Detoxify-format BERT-base toxicity classifier (random weights, Detoxify's real size) is built
and handed to the app through WORKBENCH_DETOXIFY_CHECKPOINT/_CONFIG, so the Toxicity & bias page's
main action loads it inside the server and the peaks count it; its load is also measured on its
own, for the table.

Set DEPLOY_VENV to an existing environment to skip the build (e.g. while editing this check), and
DEPLOY_KEEP=1 to keep the temporary folder (environment, models, logs, screenshots).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.browser import (
    CHROMIUM,
    REPO,
    AppServerError,
    app_server,
    browser_page,
    check_rendered,
    click_and_wait,
    main_action,
    rerun_and_wait,
    run_main_action,
    screenshot,
    wait_for_app_shell,
    wait_until_idle,
)
from bench.harness import GPT2_SMALL_SHAPE, Entry, entry, small_gpt2_dir

MEMORY_LIMIT_MB = 2700  # Community Cloud's documented limit, about 2.7 GB (subject to change)
TARGET_ONE_MODEL_MB = 1800  # GPT-2 small, after every page ran once
TARGET_TWO_MODELS_MB = 2400  # compare-by-model with two models
COMPARE_BUDGET_GB = "4.5"  # room for two GPT-2 smalls, the classifier and the analyses' reserve
SAMPLE_EVERY_S = 0.1
# A fresh server's first run and a GPT-2-sized analysis on a shared 2-core machine can take
# minutes; the browser test's limits are for the demo model.
SLOW_RUN_MS = 600_000
PIP_ARGS = ("--progress-bar off", "--retries 1")  # why --retries 1: see .ci/run
CLASSIFIER_INSTALL_TIMEOUT_S = 300
PROMPT_FOR_CLASSIFIER = "You are a wonderful person, Mary."

# The sidebar's labels (streamlit_app.py) and the registry labels its pickers show.
OTHER_OPTION = "Other: a Hub id or a folder"
CUSTOM_FIELD = "Hugging Face id or local folder"
GPT2_OPTION = "GPT-2 small"
DEMO_OPTION = "Demo model"
GPT2_HUB_ID = "openai-community/gpt2"
SIDEBAR = '[data-testid="stSidebar"]'


@dataclass(frozen=True)
class Venv:
    path: Path
    python: Path
    install_s: float
    size_mb: float
    packages: tuple[str, ...]
    torch: str
    reused: bool

    @property
    def nvidia_packages(self) -> list[str]:
        return [name for name in self.packages if name.lower().startswith("nvidia-")]


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    target_mb: float | None
    startup_mb: float
    model_load_mb: float
    page_peaks_mb: tuple[tuple[str, float], ...]
    peak_mb: float
    high_water_mb: float
    seconds: float
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ClassifierResult:
    checkpoint_mb: float
    n_params: int
    installed: str  # what happened to `pip install detoxify`
    held_mb: float | None  # RSS added once loaded and run once
    load_peak_mb: float | None  # high-water mark during loading, above the process before it


# Building and inspecting the environment

class PipInstallError(RuntimeError):
    """pip could not install into the deploy environment; the message ends with pip's log."""


def folder_size_mb(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total / 1e6


def pip_install(python: Path, *args: str, log: Path, timeout_s: float | None = None) -> None:
    command = [str(python), "-m", "pip", "install", *" ".join(PIP_ARGS).split(), *args]
    with log.open("a") as out:
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                timeout=timeout_s).returncode
    if status != 0:
        raise PipInstallError(f"{' '.join(command)} exited with {status}:\n"
                              f"{log.read_text()[-3000:]}")


def build_venv(work: Path) -> Venv:
    reused = os.environ.get("DEPLOY_VENV")
    path = Path(reused) if reused else work / "venv"
    python = path / "bin" / "python"
    start = time.monotonic()
    if not reused:
        print(f"building a fresh environment from requirements.txt alone in {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pip_install(python, "-r", str(REPO / "requirements.txt"), log=work / "pip-install.log")
    install_s = time.monotonic() - start
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], check=True,
                            capture_output=True, text=True).stdout
    packages = tuple(sorted(p["name"] for p in json.loads(listed)))
    torch_version = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__, torch.version.cuda)"],
        check=True, capture_output=True, text=True).stdout.strip()
    return Venv(path, python, install_s, folder_size_mb(path), packages, torch_version,
                bool(reused))


# Memory of the server's process tree

def tree_rss_bytes(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += member.memory_info().rss
    return total


def high_water_mb(pid: int) -> float:
    """The kernel's peak RSS of one process (VmHWM), which no sampling interval can miss."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples the tree's RSS in a thread; `window()` gives the peak while its block runs."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self.window_peak = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stopped.is_set():
            try:
                rss = tree_rss_bytes(self.process)
            except psutil.NoSuchProcess:
                return
            with self.lock:
                self.peak = max(self.peak, rss)
                self.window_peak = max(self.window_peak, rss)
            self.stopped.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    @contextlib.contextmanager
    def window(self, peaks: list[float]) -> Iterator[None]:
        """Append the peak RSS (MB) seen while the block ran to `peaks`."""
        with self.lock:
            self.window_peak = tree_rss_bytes(self.process)
        try:
            yield
        finally:
            with self.lock:
                self.window_peak = max(self.window_peak, tree_rss_bytes(self.process))
                peaks.append(self.window_peak / 1e6)


# Driving the sidebar

def sidebar_select(page, label: str, option_prefix: str) -> None:
    """Pick the option starting with `option_prefix` in the sidebar selectbox labelled `label`."""
    combobox = page.get_by_role("combobox", name=label, exact=True)  # relative to the box
    box = page.locator(f'{SIDEBAR} [data-testid="stSelectbox"]').filter(has=combobox)
    box.get_by_role("button", name="Open").click()
    option = page.get_by_role("option", name=re.compile("^" + re.escape(option_prefix)))
    click_and_wait(page, option.first, SLOW_RUN_MS)


def sidebar_custom_model(page, folder: Path) -> None:
    sidebar_select(page, "Model", OTHER_OPTION)
    field = page.locator(SIDEBAR).get_by_role("textbox", name=CUSTOM_FIELD, exact=True)
    field.fill(str(folder))
    rerun_and_wait(page, lambda: field.press("Enter"), SLOW_RUN_MS)


def sidebar_compare_models(page, second_option: str) -> None:
    click_and_wait(page, page.locator(f"{SIDEBAR} label").filter(has_text=re.compile("^Compare$")))
    radio = page.locator(f'{SIDEBAR} [data-testid="stRadio"] label').filter(
        has_text=re.compile("^Second model$"))
    if radio.count():  # pages that compare only models show no radio
        click_and_wait(page, radio.first)
    sidebar_select(page, "Second model", second_option)


def open_page(page, entry, home_path: str) -> None:
    """Go to a page through the sidebar navigation, so the session (and its choices) stays."""
    link = page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=entry.title)
    click_and_wait(page, link.first, SLOW_RUN_MS)
    wait_for_app_shell(page, entry.url_path, home_path)


# Scenarios

def run_scenario(name: str, python: Path, work: Path, choose: Callable[[object], None],
                 target_mb: float | None, extra_env: dict[str, str]) -> ScenarioResult:
    from pages.common import PAGES

    folder = work / "screens" / re.sub(r"\W+", "-", name).strip("-")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    startup, load, page_peaks, problems = [], [], [], []
    print(f"-- {name}", flush=True)
    with app_server(python, folder / "streamlit.log", extra_env) as (url, process), \
            RssSampler(process.pid) as sampler, browser_page(CHROMIUM) as page:
        with sampler.window(startup):
            page.goto(f"{url}/", wait_until="domcontentloaded")
            wait_until_idle(page, SLOW_RUN_MS)
            wait_for_app_shell(page, PAGES[0].url_path, PAGES[0].url_path)
        with sampler.window(load):
            choose(page)
        problems += check_rendered(page, f"{name}: after choosing the model", True)
        screenshot(page, folder, "model-chosen")
        for entry_ in PAGES:
            peaks: list[float] = []
            with sampler.window(peaks):
                open_page(page, entry_, PAGES[0].url_path)
                problems += check_rendered(page, f"{name}: {entry_.url_path}", True)
                screenshot(page, folder, entry_.url_path)
                action = main_action(entry_)
                if action:
                    problems += [f"{name}: {p}" for p in
                                 run_main_action(page, entry_.url_path, action, folder,
                                                 SLOW_RUN_MS)]
            page_peaks.append((entry_.url_path, peaks[0]))
            print(f"   {entry_.url_path:<12} peak {peaks[0]:7.0f} MB", flush=True)
        high_water = high_water_mb(process.pid)
        peak = sampler.peak / 1e6
    return ScenarioResult(name, target_mb, startup[0], load[0], tuple(page_peaks), peak,
                          high_water, time.monotonic() - start, tuple(problems))


def fake_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> None:
    """Put `folder` into a Hugging Face cache under `repo_id`, as a download would have left it,
    so the registry's key for it is "available" offline and loads through the Hub code path."""
    commit = "0" * 40
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in folder.iterdir():
        shutil.copy2(file, snapshot / file.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def scenarios(venv: Venv, work: Path) -> list[ScenarioResult]:
    from interp.random_models import save_random_gpt2

    gpt2_folder = small_gpt2_dir()
    empty_home = work / "hf-empty"
    empty_home.mkdir(exist_ok=True)
    second_home = work / "hf-gpt2"
    fake_hub_cache(second_home, GPT2_HUB_ID,
                   save_random_gpt2(work / "gpt2-small-seed1", seed=1, **GPT2_SMALL_SHAPE))
    from interp.random_models import save_random_detoxify

    classifier_folder = work / "detoxify-bert-base-in-app"
    classifier = save_random_detoxify(classifier_folder)
    env = {"WORKBENCH_TORCH_THREADS": os.environ.get("WORKBENCH_TORCH_THREADS", "1"),
           "WORKBENCH_DETOXIFY_CHECKPOINT": str(classifier),
           "WORKBENCH_DETOXIFY_CONFIG": str(classifier_folder)}
    return [
        run_scenario("GPT-2 small shape (local folder)", venv.python, work,
                     lambda page: sidebar_custom_model(page, gpt2_folder), TARGET_ONE_MODEL_MB,
                     {**env, "HF_HOME": str(empty_home)}),
        run_scenario("demo model", venv.python, work,
                     lambda page: sidebar_select(page, "Model", DEMO_OPTION), None,
                     {**env, "HF_HOME": str(empty_home)}),
        run_scenario("compare by model: two GPT-2 small shapes", venv.python, work,
                     lambda page: (sidebar_custom_model(page, gpt2_folder),
                                   sidebar_compare_models(page, GPT2_OPTION)),
                     TARGET_TWO_MODELS_MB, {**env, "HF_HOME": str(second_home),
                                            # The default 2.7 GB refuses the second model
                                            # (interp.memory_budget): let it in, to measure.
                                            "WORKBENCH_MEMORY_BUDGET_GB": COMPARE_BUDGET_GB}),
    ]


# The toxicity classifier, on its own

# The classifier is loaded as the app loads it (`interp.toxicity.load_classifier`), after
# importing transformers' model classes: in the app the language model has already paid for
# that import (~140 MB), which a bare process would otherwise count as the classifier's.
CLASSIFIER_PROBE = """
import json, sys, psutil, torch
from pathlib import Path
sys.path.insert(0, sys.argv[4])
torch.set_num_threads(1)
process = psutil.Process()
def hwm():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
import transformers.modeling_utils
from transformers import BertForSequenceClassification, GPT2LMHeadModel
from interp.heap import release_freed_memory
from interp.toxicity import ClassifierSource, load_classifier
release_freed_memory()
before, hwm_before = process.memory_info().rss, hwm()
model = load_classifier(ClassifierSource(checkpoint=sys.argv[1], config_folder=sys.argv[2]))
model.predict([sys.argv[3]])
print(json.dumps({"held": process.memory_info().rss - before, "peak": hwm() - hwm_before,
                  "before": before}))
"""


def measure_classifier(venv: Venv, work: Path) -> ClassifierResult:
    from interp.random_models import save_random_detoxify

    folder = work / "detoxify-bert-base"
    checkpoint = save_random_detoxify(folder)
    n_params = classifier_params(folder)
    size_mb = checkpoint.stat().st_size / 1e6
    if "detoxify" in venv.packages:
        installed = "detoxify already in the environment"
    elif venv.reused:
        return ClassifierResult(size_mb, n_params, "size only: detoxify is not in the "
                                "environment given by DEPLOY_VENV, and nothing is installed there",
                                None, None)
    else:
        start = time.monotonic()
        try:
            pip_install(venv.python, "detoxify", log=work / "pip-detoxify.log",
                        timeout_s=CLASSIFIER_INSTALL_TIMEOUT_S)
        except (PipInstallError, subprocess.TimeoutExpired) as error:
            return ClassifierResult(size_mb, n_params, f"not installed ({type(error).__name__}); "
                                    "size only", None, None)
        installed = f"detoxify installed from PyPI in {time.monotonic() - start:.0f} s"
    probe = subprocess.run([str(venv.python), "-c", CLASSIFIER_PROBE, str(checkpoint),
                            str(folder), PROMPT_FOR_CLASSIFIER, str(REPO)], capture_output=True,
                           text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if probe.returncode != 0:
        return ClassifierResult(size_mb, n_params, f"{installed}, but loading it failed:\n"
                                f"{probe.stderr[-2000:]}", None, None)
    numbers = json.loads(probe.stdout.strip().splitlines()[-1])
    return ClassifierResult(size_mb, n_params, installed, numbers["held"] / 1e6,
                            numbers["peak"] / 1e6)


def classifier_params(folder: Path) -> int:
    """Parameter count of the classifier in `folder`, built on the meta device (no memory)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig.from_pretrained(folder))
    return sum(parameter.numel() for parameter in model.parameters())


# Report

def verdict(value_mb: float, target_mb: float | None) -> str:
    budget = f"{value_mb / MEMORY_LIMIT_MB:4.0%} of the {MEMORY_LIMIT_MB / 1000:.1f} GB budget"
    if target_mb is None:
        return budget
    gap = value_mb - target_mb
    met = "target met" if gap <= 0 else f"target MISSED by {gap:.0f} MB"
    return f"{budget}; target <= {target_mb / 1000:.1f} GB: {met}"


def report(venv: Venv, results: list[ScenarioResult], classifier: ClassifierResult) -> None:
    print("== deploy check")
    print(f"environment: {venv.path} (requirements.txt alone)")
    install = ("reused (DEPLOY_VENV), install not timed" if venv.reused
               else f"install {venv.install_s:.0f} s")
    print(f"  {install}, {len(venv.packages)} packages, "
          f"{venv.size_mb:,.0f} MB on disk; torch {venv.torch} (version, CUDA)")
    print(f"  nvidia-* packages: {', '.join(venv.nvidia_packages) or 'none'}")
    for result in results:
        print(f"{result.name} ({result.seconds:.0f} s):")
        print(f"  server after start     {result.startup_mb:7.0f} MB")
        print(f"  choosing the model(s)  {result.model_load_mb:7.0f} MB")
        for url_path, peak in result.page_peaks_mb:
            print(f"  page {url_path:<17} {peak:7.0f} MB (peak while it and its action ran)")
        print(f"  peak, sampled          {result.peak_mb:7.0f} MB: "
              f"{verdict(result.peak_mb, result.target_mb)}")
        print(f"  peak, kernel (VmHWM)   {result.high_water_mb:7.0f} MB (server process)")
        for problem in result.problems:
            print(f"  PROBLEM: {problem}")
    print(f"toxicity classifier (random BERT-base in Detoxify's format, {classifier.n_params:,} "
          f"parameters, checkpoint {classifier.checkpoint_mb:,.0f} MB): loaded by the Toxicity "
          "& bias page inside the server in every scenario above; on its own:")
    print(f"  {classifier.installed}")
    if classifier.held_mb is not None:
        print(f"  held once loaded and run {classifier.held_mb:7.0f} MB; "
              f"peak while loading +{classifier.load_peak_mb:.0f} MB")


def run() -> list[Entry]:
    work = Path(tempfile.mkdtemp(prefix="deploy-check-"))
    try:
        venv = build_venv(work)
        if venv.nvidia_packages:
            raise AssertionError(f"the deploy environment holds NVIDIA packages: "
                                 f"{', '.join(venv.nvidia_packages)}; torch {venv.torch}")
        try:
            results = scenarios(venv, work)
        except AppServerError as error:
            raise AssertionError(
                f"the app did not start from the deploy environment: {error}") from error
        classifier = measure_classifier(venv, work)
        report(venv, results, classifier)
    finally:
        if os.environ.get("DEPLOY_KEEP") == "1":
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    entries = [
        entry("deploy: fresh venv install (s)", venv.install_s, note=f"{len(venv.packages)} "
              f"packages, torch {venv.torch}, nvidia-* packages: {len(venv.nvidia_packages)}"),
        entry("deploy: fresh venv size (MB)", venv.size_mb, note="disk, not seconds"),
    ]
    for result in results:
        for url_path, peak in result.page_peaks_mb:
            entries.append(entry(f"deploy: {result.name}: {url_path} peak RSS (MB)", peak,
                                 note="server process tree, not seconds"))
        entries.append(entry(f"deploy: {result.name}: peak RSS (MB)", result.peak_mb,
                             note=verdict(result.peak_mb, result.target_mb)))
    if classifier.held_mb is not None:
        entries.append(entry("deploy: toxicity classifier held RSS (MB)", classifier.held_mb,
                             note=f"not used by any page yet; load peak "
                                  f"+{classifier.load_peak_mb:.0f} MB"))
    problems = [p for result in results for p in result.problems]
    if problems:
        raise AssertionError("the app showed problems in the deploy check:\n" + "\n".join(problems))
    return entries
