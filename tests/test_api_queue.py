"""API model work waits in the same fair queue as the pages' analyses, and a request whose
estimated wait is too long is answered 503 with Retry-After instead of hanging.

In process (FastAPI's TestClient), on the demo model held by `interp.caching`, as the pages
hold it. Reference: the queue's own estimate rule written out by hand (one finished turn of
`TURN_S` makes the typical turn; a turn that has just started has about that much left).
"""

from __future__ import annotations

import math
import threading
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_api
from interp.caching import shared_model
from interp.settings import Settings

TURN_S = 2.0


@pytest.fixture(scope="module")
def demo_queue():
    return shared_model("demo").lock.queue


def hold_turn(queue, seconds: float, started: threading.Event, release: threading.Event):
    ticket = queue.enter(owner="a page's session")
    started.set()
    release.wait(seconds)
    queue.leave(ticket)


def test_a_busy_model_answers_503_with_retry_after(demo_queue):
    settings = Settings(allow_custom_models=False, api_max_wait_s=0.5,
                        api_requests_per_minute=1000)
    first = demo_queue.enter(owner="earlier session")
    time.sleep(TURN_S)
    demo_queue.leave(first)  # one finished turn of TURN_S: the typical turn is now TURN_S
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_turn, args=(demo_queue, 30, started, release))
    holder.start()
    started.wait(10)
    try:
        with TestClient(create_api(settings), base_url="http://test") as client:
            answer = client.post("/logit_lens", json={"model": "demo", "prompt": "The cat"})
    finally:
        release.set()
        holder.join()
    assert answer.status_code == 503, answer.text
    assert "busy" in answer.json()["detail"]
    # About TURN_S left of the running turn (less the moments since it began), rounded up.
    assert 1 <= int(answer.headers["retry-after"]) <= math.ceil(TURN_S)


def test_with_the_model_free_the_same_request_is_served(demo_queue):
    settings = Settings(allow_custom_models=False, api_max_wait_s=0.5)
    with TestClient(create_api(settings), base_url="http://test") as client:
        answer = client.post("/logit_lens", json={"model": "demo", "prompt": "The cat"})
    assert answer.status_code == 200 and answer.json()["result_type"] == "LensResult"
    assert demo_queue.running_ticket() is None and demo_queue.waiting() == 0
