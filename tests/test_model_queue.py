"""The fair queue in front of a shared model: arrival order, bounded waits, dropped work, limits.

Analyses here are real work on the tiny model (several forward passes each, every pass taking
the model's lock on its own), so a lock that is handed over unfairly, or let go between passes,
shows up as a wrong order or a wait longer than the work ahead.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from interp import model_queue
from interp import patching as P
from interp.errors import AnalysisCancelledError, QueueFullError, QueueWaitTooLongError
from interp.model_queue import QueueLimits
from tests.test_patching_engine import ioi_inputs

PROMPT = "When Mary and John went to the store, John gave a drink to"
PASSES = 6
# Slack for the queue itself and for threads waking up on a loaded machine, beyond the work.
SLACK_FACTOR, SLACK_S = 1.5, 0.3


def analysis_work(model, scale: float) -> torch.Tensor:
    """One analysis: PASSES plain forward passes, each its own `logits()` call (its own lock)."""
    tokens = model.to_tokens([PROMPT] * 2)
    total = torch.zeros(())
    for _ in range(PASSES):
        total = total + model.logits(tokens).float().mean() * scale
    return total


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


def submit_in_order(model, owners, target, errors):
    """Start one thread per owner, each only once the previous one is queued; the caller holds
    the model, so all of them wait. Returns the threads."""
    queue = model.lock.queue
    threads = []
    for index, owner in enumerate(owners):
        thread = threading.Thread(target=target, args=(owner,))
        thread.start()
        try:
            wait_until(lambda index=index: queue.waiting() == index + 1)
        except TimeoutError:
            errors.append(f"{owner} never queued")
        threads.append(thread)
    return threads


@pytest.mark.slow
def test_eight_analyses_finish_in_arrival_order_each_waiting_only_for_the_work_ahead(tiny_model):
    """Reference: the same eight analyses run alone, one after another: each queued one must
    give the same number, finish in the order submitted, and finish no later than the sum of
    its own and every earlier analysis's alone time (x1.5, +0.3 s for the machine's load)."""
    owners = [f"session-{i}" for i in range(8)]
    scales = {owner: 1.0 + i for i, owner in enumerate(owners)}
    alone_s, alone_value = {}, {}
    for owner in owners:
        start = time.perf_counter()
        alone_value[owner] = analysis_work(tiny_model, scales[owner])
        alone_s[owner] = time.perf_counter() - start

    finished_at, values, order, errors = {}, {}, [], []
    order_lock = threading.Lock()

    def session(owner):
        try:
            with model_queue.analysis(owner, models=[tiny_model]):
                values[owner] = analysis_work(tiny_model, scales[owner])
            with order_lock:
                finished_at[owner] = time.perf_counter()
                order.append(owner)
        except Exception as error:  # reported below, with the thread's owner
            errors.append(f"{owner}: {error!r}")

    with tiny_model.lock:  # holds the model until all eight are queued
        threads = submit_in_order(tiny_model, owners, session, errors)
        released_at = time.perf_counter()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    late = []
    for index, owner in enumerate(owners):
        assert torch.allclose(values[owner], alone_value[owner], atol=1e-5)
        work_up_to_here = sum(alone_s[o] for o in owners[:index + 1])
        took = finished_at[owner] - released_at
        if took > SLACK_FACTOR * work_up_to_here + SLACK_S:
            late.append(f"{owner}: {took:.2f} s, work up to it {work_up_to_here:.2f} s")
    assert (order, late) == (owners, [])
    assert tiny_model.active_hook_count() == 0


def test_a_queued_analysis_whose_session_left_never_runs(tiny_model):
    """Reference: a count of the analyses that started computing. Of three queued sessions the
    middle one goes away while waiting: the other two run, it never starts, and its caller is
    told with `AnalysisCancelledError`."""
    gone = {"b": False}
    started, outcomes, errors = [], {}, []

    def session(owner):
        try:
            with model_queue.analysis(owner, cancelled=lambda: gone.get(owner, False),
                                      models=[tiny_model]):
                started.append(owner)
                analysis_work(tiny_model, 1.0)
            outcomes[owner] = "done"
        except AnalysisCancelledError:
            outcomes[owner] = "dropped"

    with tiny_model.lock:
        threads = submit_in_order(tiny_model, ["a", "b", "c"], session, errors)
        gone["b"] = True
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert started == ["a", "c"]
    assert outcomes == {"a": "done", "b": "dropped", "c": "done"}
    assert tiny_model.lock.queue.waiting() == 0


@pytest.mark.parametrize("site, granularity, progress_checks", [
    ("z", "head", False),  # every batch is a forward pass: the pass itself checks
    ("resid_pre", "layer_pos", True),  # batches that need no pass: the progress path checks
])
def test_a_running_analysis_stops_at_the_next_batch_and_leaves_no_hook(
        tiny_model, site, granularity, progress_checks):
    """Reference: the same sweep run to the end reports its progress once per batch (more than
    two batches); when the session goes away after the first batch, the run must stop before the
    second batch reports, raise `AnalysisCancelledError`, and leave no hook and a free lock."""
    inputs, metric, _, _ = ioi_inputs(tiny_model)
    batches_alone = []
    P.patch(tiny_model, inputs, metric, site=site, granularity=granularity, batch_size=2,
            progress=lambda done, total: batches_alone.append(done))
    assert len(batches_alone) > 2

    gone = threading.Event()
    batches = []

    def progress(done, total):
        batches.append(done)
        gone.set()  # the tab closes while the first batch is being reported
        if progress_checks:
            model_queue.check_cancelled()  # what the page kit's progress callback does

    with pytest.raises(AnalysisCancelledError):
        with model_queue.analysis("leaving", cancelled=gone.is_set, models=[tiny_model]):
            P.patch(tiny_model, inputs, metric, site=site, granularity=granularity,
                    batch_size=2, progress=progress)
    assert len(batches) == 1
    assert tiny_model.active_hook_count() == 0
    assert tiny_model.lock.acquire(blocking=False)
    tiny_model.lock.release()


def test_progress_callbacks_can_ask_whether_the_analysis_is_still_wanted(tiny_model):
    """Invariant: outside an analysis the check does nothing; inside one it raises once
    `cancelled()` is true."""
    model_queue.check_cancelled()
    wanted = {"yes": True}
    with model_queue.analysis("s", cancelled=lambda: not wanted["yes"]):
        model_queue.check_cancelled()
        wanted["yes"] = False
        with pytest.raises(AnalysisCancelledError):
            model_queue.check_cancelled()


def test_the_queue_refuses_work_past_its_length_and_past_an_owners_cap(tiny_model):
    """Reference: the configured limits, counted by hand: with one analysis running and the
    limit at two waiting, a third waiter is refused, and so is an owner's second waiting one
    when the cap is one; a waiter is told how many are ahead of it."""
    queue = tiny_model.lock.queue
    limits = QueueLimits(max_waiting=2, per_owner=1)
    release, errors, told = threading.Event(), [], {}

    def holder():
        with model_queue.analysis("holder", models=[tiny_model]):
            release.wait(timeout=60)

    def waiter(owner):
        try:
            with model_queue.analysis(owner, limits=limits, models=[tiny_model],
                                      on_wait=lambda state: told.setdefault(owner, state)):
                pass
        except Exception as error:  # reported below
            errors.append(repr(error))

    running = threading.Thread(target=holder)
    running.start()
    wait_until(lambda: queue.running_ticket() is not None)
    threads = []
    for index, owner in enumerate(["x", "y"]):
        threads.append(threading.Thread(target=waiter, args=(owner,)))
        threads[-1].start()
        wait_until(lambda index=index: queue.waiting() == index + 1)
    try:
        with pytest.raises(QueueFullError, match="busy: 2 analyses are already waiting"):
            queue.enter("z", limits=limits)
        with pytest.raises(QueueFullError, match="You already have 1 analyses waiting"):
            queue.enter("x", limits=QueueLimits(max_waiting=5, per_owner=1))
    finally:
        release.set()
        running.join(timeout=60)
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert told["x"].ahead == 1 and told["y"].ahead == 2


def test_the_estimate_comes_from_recent_run_times_and_bounds_an_api_wait():
    """Reference: hand arithmetic on turns of known length (sleeps of 0.3 s): with one running
    analysis just started, a newcomer has 1 ahead and about 0.3 s to wait; `admit` refuses a
    wait longer than allowed, with that estimate as its Retry-After."""
    queue = model_queue.ModelQueue("a test model")
    assert queue.state().estimate_s is None  # nothing has run yet
    for _ in range(2):
        ticket = queue.enter("past")
        time.sleep(0.3)
        queue.leave(ticket)
    running = queue.enter("now")
    state = queue.state()
    assert state.ahead == 1
    assert 0.2 <= state.estimate_s <= 0.35
    with pytest.raises(QueueWaitTooLongError, match="busy: 1 analyses ahead") as refused:
        queue.admit(max_wait_s=0.1)
    assert refused.value.retry_after_s == pytest.approx(state.estimate_s, abs=0.05)
    assert queue.admit(max_wait_s=60).ahead == 1
    queue.leave(running)
    assert queue.state() == model_queue.QueueState(0, 0.0)
