"""Model work for the API: off the event loop, on its own threads, in the pages' fair queue.

Handlers are async and run on the event loop that also serves the dashboard's websocket, so a
forward pass there would freeze every browser session; Starlette's shared thread pool also
serves static files. Here each request's work goes to a small executor of its own
(`WORKBENCH_API_WORKERS` threads), and inside it joins the model's queue
(`interp.model_queue.analysis`) like a page's analysis, owned by the client's address: one queue
orders all work on a model, and the API can hold at most that many places in it, so it can't
starve the dashboard's turn. A request is refused with 503 and Retry-After (never left to hang)
when more API requests than the queue's length are already in flight, or when the model's
estimated wait, or its own wait for a thread, is over `WORKBENCH_API_MAX_WAIT_S`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from interp import model_queue
from interp.caching import model_cache, shared_model
from interp.errors import ModelUnavailableError, QueueFullError, QueueWaitTooLongError
from interp.models import MODEL_REGISTRY, LoadedModel, available_models, is_available
from interp.settings import Settings, check_model_allowed


def open_model(name: str, settings: Settings) -> LoadedModel:
    """The shared model (the pages' copy) for `name`, within what this deployment allows: with
    custom models off, only listed models, and only those that load without a download."""
    name = name.strip()
    check_model_allowed(name, settings.allow_custom_models)
    spec = MODEL_REGISTRY.get(name)
    if (not settings.allow_custom_models and spec is not None and not is_available(spec)
            and name not in model_cache().names()):
        loadable = ", ".join(s.key for s in available_models()) or "none"
        raise ModelUnavailableError(
            f"{spec.label} is not loaded on this deployment, and API requests never start a "
            f"download here. Models that load now: {loadable}.")
    return shared_model(name)


class ModelWork:
    """Runs `fn(model, *args)` for API requests, at most `settings.queue_length` in flight."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.executor = ThreadPoolExecutor(settings.api_workers, thread_name_prefix="api-model")
        self.in_flight = 0  # changed only on the event loop

    def busy_error(self) -> QueueFullError:
        return QueueWaitTooLongError(
            f"The API is busy: {self.in_flight} requests are being served (the most allowed is "
            f"{self.settings.queue_length}). Try again in a moment.",
            retry_after_s=self.settings.api_max_wait_s / 4)

    async def run(self, owner: str, model_name: str, fn: Callable, *args,
                  finish: Callable | None = None):
        """`fn(model, *args)` on a worker thread, in the model's queue as `owner`; then, on the
        same thread but after the model's turn is over, `finish(result)` (serializing)."""
        if self.in_flight >= self.settings.queue_length:
            raise self.busy_error()
        self.in_flight += 1
        gone = threading.Event()
        submitted = time.monotonic()
        try:
            future = self.executor.submit(self.in_turn, owner, gone, submitted, model_name, fn,
                                          args, finish)
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            gone.set()  # the client went away: a queued ticket leaves, a running one stops
            raise
        finally:
            self.in_flight -= 1

    async def call(self, fn: Callable, *args):
        """Other blocking work (loading a model for its card) on the same threads."""
        return await asyncio.wrap_future(self.executor.submit(fn, *args))

    def in_turn(self, owner: str, gone: threading.Event, submitted: float, model_name: str,
                fn: Callable, args: tuple, finish: Callable | None):
        waited = time.monotonic() - submitted
        if waited > self.settings.api_max_wait_s:
            raise QueueWaitTooLongError(
                f"This request waited {waited:.0f} s for a free API thread, more than the "
                f"{self.settings.api_max_wait_s:g} s a request may wait. Try again in a moment.",
                retry_after_s=waited / 2)
        model = open_model(model_name, self.settings)
        model.lock.queue.admit(self.settings.api_max_wait_s)
        with model_queue.analysis(("api", owner), cancelled=gone.is_set,
                                  limits=self.settings.queue_limits, models=[model]):
            result = fn(model, *args)
        return result if finish is None else finish(result)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
