"""The page side of the queue: a full queue gives a clear "busy" message, and the wait text.

The model the page runs on is the process's shared demo model (`interp.caching.shared_model`),
which this test also holds from its own threads, as other sessions would.
"""

from __future__ import annotations

import threading
import time

from interp import model_queue
from interp.caching import shared_model
from interp.model_queue import QueueState
from pages.kit import PAGES
from pages.kit.queue import wait_text
from tests.test_pages_apptest import open_page, problems, run_main_action

PATCHING = next(entry for entry in PAGES if entry.url_path == "patching")


def test_wait_text_says_how_many_are_ahead_and_for_how_long():
    """Reference: the sentences written out by hand."""
    assert wait_text(QueueState(1, None)) == "Waiting for the model: 1 analysis ahead"
    assert wait_text(QueueState(3, 41.6)) == "Waiting for the model: 3 analyses ahead (about 42 s)"


def test_a_full_queue_says_busy_try_again_and_runs_nothing(monkeypatch):
    """Reference: the configured limit (1 waiting analysis) counted by hand: with one analysis
    of another session running and one waiting, the page's click is refused with the busy
    message, no result is kept, and the queue is as it was."""
    monkeypatch.setenv("WORKBENCH_QUEUE_LENGTH", "1")
    model = shared_model("demo")
    queue = model.lock.queue
    release = threading.Event()

    def other_session(owner):
        with model_queue.analysis(owner, models=[model]):
            release.wait(timeout=120)

    threads = [threading.Thread(target=other_session, args=(f"other-{i}",)) for i in range(2)]
    app = open_page(PATCHING)  # first: opening runs forward passes of its own (the Home shell)
    try:
        threads[0].start()
        while queue.running_ticket() is None:
            time.sleep(0.01)
        threads[1].start()
        while queue.waiting() < 1:
            time.sleep(0.01)
        app = run_main_action(app, PATCHING)
        shown = problems(app)
        assert queue.waiting() == 1
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=120)
    assert len(shown) == 1 and "is busy" in shown[0] and "Try again in a moment" in shown[0]
    assert not app.get("plotly_chart")
