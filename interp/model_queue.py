"""A fair queue in front of one shared model: analyses take turns in arrival order.

Every forward pass on a shared `LoadedModel` holds its lock, and an analysis makes many passes.
A plain lock hands itself to whichever thread grabs it first after a release, usually the one
that just released it, so one session's analysis can starve behind the others for as long as
they keep going. Here each analysis takes a numbered ticket and holds the model for its whole
turn, tickets are served strictly in order, and a waiter can learn how many analyses are ahead
of it with an estimate from recent run times. A ticket whose owner has gone (a closed tab, a
newer request) leaves the queue before it runs; a running one stops at its next forward pass.

Callers say who owns an analysis (a session id, an API client) and how to tell that it is no
longer wanted, with `analysis(owner, cancelled=..., on_wait=...)`; `interp` never asks Streamlit.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from interp import heap
from interp.errors import AnalysisCancelledError, QueueFullError, QueueWaitTooLongError

RECENT_RUNS = 10  # turns whose durations the wait estimate is made from
POLL_S = 0.2  # how often a waiter re-checks its owner and reports its place


@dataclass(frozen=True)
class QueueLimits:
    """How many analyses may wait for one model, and how many of them one owner may have."""

    max_waiting: int = 16
    per_owner: int = 2


@dataclass(frozen=True)
class QueueState:
    """What a waiting analysis is told: analyses ahead of it (the running one included) and
    about how long they will take from recent run times (None before any turn has ended)."""

    ahead: int
    estimate_s: float | None


@dataclass(eq=False)
class Ticket:
    """One place in the queue: whose it is, and which thread holds it."""

    owner: Hashable | None
    thread: int
    cancelled: Callable[[], bool] | None
    started_at: float | None = None

    def is_cancelled(self) -> bool:
        return self.cancelled is not None and bool(self.cancelled())


class ModelQueue:
    """Tickets for one model, served one at a time in the order they were taken."""

    def __init__(self, label: str):
        self.label = label
        self._condition = threading.Condition()
        self._waiting: list[Ticket] = []  # in the order they were taken
        self._running: Ticket | None = None
        self._durations: deque[float] = deque(maxlen=RECENT_RUNS)

    def enter(self, owner: Hashable | None = None, cancelled: Callable[[], bool] | None = None,
              on_wait: Callable[[QueueState], None] | None = None,
              limits: QueueLimits | None = None, timeout_s: float | None = None) -> Ticket | None:
        """Take a ticket and wait for its turn; returns it once this thread holds the model.

        An owned ticket is refused with `QueueFullError` beyond `limits` (None: the defaults).
        While waiting, `on_wait(state)` is called whenever the place or estimate changes (and
        whatever it raises withdraws the ticket and propagates), and `cancelled()` is asked every
        `POLL_S`: when true the ticket leaves and `AnalysisCancelledError` is raised. With
        `timeout_s`, None is returned if the turn has not come by then.
        """
        ticket = self._take(owner, cancelled, limits or QueueLimits())
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        told = None
        try:
            while True:
                with self._condition:
                    if self._running is None and self._waiting[0] is ticket:
                        self._waiting.pop(0)
                        ticket.started_at = time.monotonic()
                        self._running = ticket
                        return ticket
                    state = self._state_of(ticket)
                if ticket.is_cancelled():
                    raise AnalysisCancelledError(
                        f"The analysis waiting for {self.label} was dropped: whoever asked for "
                        "it has gone or asked for something else.")
                # Told again only when its place or its estimate in whole seconds moves.
                shown = (state.ahead, None if state.estimate_s is None else round(state.estimate_s))
                if on_wait is not None and shown != told:
                    on_wait(state)
                    told = shown
                if deadline is not None and time.monotonic() >= deadline:
                    self._withdraw(ticket)
                    return None
                with self._condition:
                    if not (self._running is None and self._waiting[0] is ticket):
                        self._condition.wait(POLL_S)
        except BaseException:
            self._withdraw(ticket)
            raise

    def leave(self, ticket: Ticket) -> None:
        """End `ticket`'s turn (or withdraw it if it was still waiting); the next one starts."""
        with self._condition:
            if self._running is ticket:
                self._running = None
                if ticket.owner is not None and ticket.started_at is not None:
                    self._durations.append(time.monotonic() - ticket.started_at)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._condition.notify_all()

    def holds_turn(self) -> bool:
        """Whether the calling thread holds the model's turn right now."""
        running = self._running
        return running is not None and running.thread == threading.get_ident()

    def running_ticket(self) -> Ticket | None:
        return self._running

    def state(self) -> QueueState:
        """The place a new arrival would get now (for an API's queue-position header)."""
        with self._condition:
            return self._state_ahead(len(self._waiting))

    def waiting(self) -> int:
        """Tickets waiting now, not counting the running one."""
        with self._condition:
            return len(self._waiting)

    def admit(self, max_wait_s: float) -> QueueState:
        """The place a new request would get, or `QueueWaitTooLongError` (with `retry_after_s`)
        when its estimated wait is over `max_wait_s`: what an API turns into 503 + Retry-After."""
        state = self.state()
        if state.estimate_s is not None and state.estimate_s > max_wait_s:
            raise QueueWaitTooLongError(
                f"{self.label} is busy: {state.ahead} analyses ahead, about "
                f"{state.estimate_s:.0f} s of work, more than the {max_wait_s:g} s a request may "
                "wait. Try again in a moment.", retry_after_s=state.estimate_s)
        return state

    def _take(self, owner, cancelled, limits: QueueLimits) -> Ticket:
        with self._condition:
            if owner is not None:
                if len(self._waiting) >= limits.max_waiting:
                    raise QueueFullError(
                        f"{self.label} is busy: {len(self._waiting)} analyses are already "
                        f"waiting (the most allowed is {limits.max_waiting}). Try again in a "
                        "moment.")
                mine = sum(t.owner == owner for t in self._waiting)
                if mine >= limits.per_owner:
                    raise QueueFullError(
                        f"You already have {mine} analyses waiting for {self.label} (the most "
                        f"allowed is {limits.per_owner}). Wait for them to finish, then try "
                        "again.")
            ticket = Ticket(owner, threading.get_ident(), cancelled)
            self._waiting.append(ticket)
            return ticket

    def _withdraw(self, ticket: Ticket) -> None:
        with self._condition:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._condition.notify_all()

    def _state_of(self, ticket: Ticket) -> QueueState:
        return self._state_ahead(self._waiting.index(ticket))

    def _state_ahead(self, waiting_ahead: int) -> QueueState:
        running = self._running
        ahead = waiting_ahead + (running is not None)
        if not self._durations:
            return QueueState(ahead, None)
        typical = statistics.median(self._durations)
        left = 0.0
        if running is not None and running.started_at is not None:
            left = max(typical - (time.monotonic() - running.started_at), 0.0)
        return QueueState(ahead, left + waiting_ahead * typical)


@dataclass
class Analysis:
    """The analysis this thread is running: its owner, its checks, and the turns it holds."""

    owner: Hashable
    cancelled: Callable[[], bool] | None
    on_wait: Callable[[QueueState], None] | None
    limits: QueueLimits | None
    turns: list[tuple[ModelQueue, Ticket]] = field(default_factory=list)

    def take_turn(self, queue: ModelQueue) -> None:
        """Wait for `queue`'s model; the turn lasts until the analysis ends."""
        ticket = queue.enter(self.owner, self.cancelled, self.on_wait, self.limits)
        assert ticket is not None  # without a timeout, enter() returns only once the turn came
        self.turns.append((queue, ticket))

    def raise_if_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise AnalysisCancelledError(
                "The analysis was stopped: whoever asked for it has gone or asked for something "
                "else.")


_current = threading.local()


def current_analysis() -> Analysis | None:
    """The analysis the calling thread is inside, if any."""
    return getattr(_current, "analysis", None)


@contextlib.contextmanager
def analysis(owner: Hashable, cancelled: Callable[[], bool] | None = None,
             on_wait: Callable[[QueueState], None] | None = None,
             limits: QueueLimits | None = None, models: Iterable = ()) -> Iterator[Analysis]:
    """Run the block as one analysis owned by `owner`: the first use of each shared model in
    it waits for that model's turn, and the turn is held until the block ends, so no other
    analysis runs between its forward passes.

    `models` (LoadedModels) are waited for before the block starts, in a fixed order, so an
    analysis that is dropped while queued never starts. While the block runs, each forward pass
    asks `cancelled()` first and raises `AnalysisCancelledError` when it is true; progress
    callbacks can ask too (`check_cancelled`). A block inside another analysis joins it.
    """
    outer = current_analysis()
    if outer is not None:
        yield outer
        return
    this = Analysis(owner, cancelled, on_wait, limits)
    _current.analysis = this
    try:
        for model in sorted(models, key=id):
            queue = model.lock.queue
            if not queue.holds_turn():
                this.take_turn(queue)
        yield this
    finally:
        _current.analysis = None
        worked = bool(this.turns)
        for queue, ticket in reversed(this.turns):
            queue.leave(ticket)
        if worked:  # what the analysis freed would otherwise stay in the server's heap
            heap.release_freed_memory()


def check_cancelled() -> None:
    """Raise `AnalysisCancelledError` if the calling thread's analysis is no longer wanted (a
    check for progress callbacks, at a batch boundary; a no-op outside an analysis)."""
    this = current_analysis()
    if this is not None:
        this.raise_if_cancelled()
