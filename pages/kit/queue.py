"""Running a page's analysis in its model's fair queue: a visible wait, and no work for sessions
that left.

Each session's analysis is one `Job`, run by the script run that started it, inside
`interp.model_queue.analysis` with the session id as its owner. While it waits, its bar says
how many analyses are ahead and about how long they take. Streamlit answers a click during a
run by stopping that run and starting a new one; the job carries on regardless (its work is not
thrown away), and the new run follows it instead of queueing the same work again. A job stops,
queued or running, only when its session is gone or a click asks the same page for other
inputs. Streamlit's own calls are wrapped here: `interp` is handed plain callables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException, StopException
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from interp import model_queue
from interp.caching import secrets
from interp.errors import AnalysisCancelledError, InterpError
from interp.model_queue import QueueLimits, QueueState
from interp.models import LoadedModel
from interp.settings import Settings
from pages.kit.runs import note_origin, session_origins
from pages.kit.state import Keys

JOBS = "kit.queue.jobs"
FOLLOW_POLL_S = 0.25
_registry_lock = threading.Lock()  # jobs of one session are started from several script runs


def wait_text(state: QueueState) -> str:
    """What a queued analysis shows: how many are ahead, and about how long they take."""
    ahead = f"{state.ahead} analysis" if state.ahead == 1 else f"{state.ahead} analyses"
    estimate = "" if state.estimate_s is None else f" (about {state.estimate_s:.0f} s)"
    return f"Waiting for the model: {ahead} ahead{estimate}"


@dataclass(eq=False)
class Job:
    """One analysis of this session: its inputs' signature, where it stands, how it ended."""

    signature: object
    fraction: float = 0.0
    text: str = "Starting ..."
    superseded: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def report(self, fraction: float, text: str) -> None:
        self.fraction, self.text = min(max(float(fraction), 0.0), 1.0), text


def session_id() -> str | None:
    ctx = get_script_run_ctx(suppress_warning=True)
    return None if ctx is None else ctx.session_id


def session_gone(session: str | None) -> bool:
    """True once Streamlit no longer has this session (closed tab, timed out). AppTest and bare
    runs have no runtime: their session never goes."""
    if session is None or not Runtime.exists():
        return False
    return not Runtime.instance().is_active_session(session)


def queue_limits() -> QueueLimits:
    return Settings.from_env(secrets()).queue_limits


class Display:
    """The bar of the script run that started a job. When Streamlit replaces that run (a
    click), drawing raises; the bar is then given up and the job goes on undrawn."""

    def __init__(self):
        self.bar = st.progress(0.0, text="Starting ...")
        self.live = True
        self.rerun: RerunException | None = None

    def draw(self, job: Job) -> None:
        if not self.live:
            return
        try:
            self.bar.progress(job.fraction, text=job.text)
        except StopException:
            self.live = False
        except RerunException as rerun:  # without fast reruns: rerun once the job is done
            self.rerun = rerun

    def close(self) -> None:
        if self.live:
            try:
                self.bar.empty()
            except StopException:
                self.live = False


def run_in_turn(key: str, signature, start: bool, fn: Callable, *args) -> None:
    """Compute `fn(*args, progress=...)` in its model's queue and keep it under `key` with its
    `signature` (as `run_and_remember` does), or follow this session's job already at work on
    it; `start=False` only follows. Interp errors propagate, to be shown."""
    results = st.session_state.setdefault(Keys.RESULTS, {})
    jobs = st.session_state.setdefault(JOBS, {})
    stored = results.get(key)
    with _registry_lock:
        job = jobs.get(key)
        if start and job is not None and job.signature != signature:
            job.superseded = True  # a click for other inputs: that work is no longer wanted
            job = None
        if job is None:
            if not start or (stored is not None and stored[0] == signature):
                return
            job = jobs[key] = Job(signature)
            mine = True
        else:
            mine = False
    if mine:
        run_job(job, key, results, jobs, fn, args, session_origins())
    else:
        follow(job)


def run_job(job: Job, key: str, results: dict, jobs: dict, fn: Callable, args: tuple,
            origins: dict) -> None:
    session = session_id()
    display = Display()

    def cancelled() -> bool:
        return job.superseded or session_gone(session)

    def on_wait(state: QueueState) -> None:
        job.report(0.0, wait_text(state))
        display.draw(job)

    def progress(fraction: float, text: str) -> None:
        model_queue.check_cancelled()
        job.report(fraction, text)
        display.draw(job)

    try:
        with model_queue.analysis(session, cancelled=cancelled, on_wait=on_wait,
                                  limits=queue_limits(),
                                  models=[a for a in args if isinstance(a, LoadedModel)]):
            job.report(0.0, "Starting ...")
            display.draw(job)
            started = time.perf_counter()
            result = fn(*args, progress=progress)
        results[key] = (job.signature, result)  # plain dicts: no Streamlit call here
        note_origin(origins, result, fn, args, None, time.perf_counter() - started)
    except BaseException as error:
        job.error = error
        raise
    finally:
        with _registry_lock:
            if jobs.get(key) is job:
                del jobs[key]
        job.finished.set()
        display.close()
    if not display.live:
        raise StopException()  # Streamlit replaced this run; the new one shows the result
    if display.rerun is not None:
        raise display.rerun


def follow(job: Job) -> None:
    """Show the progress of this session's job started by an earlier run, until it ends."""
    bar = st.progress(job.fraction, text=job.text)
    while not job.finished.wait(FOLLOW_POLL_S):
        bar.progress(job.fraction, text=job.text)
    bar.empty()
    if isinstance(job.error, InterpError) and not isinstance(job.error, AnalysisCancelledError):
        raise job.error


def in_flight(key: str) -> bool:
    """Whether this session has a job at work under `key` (started by an earlier run)."""
    return key in st.session_state.get(JOBS, {})
