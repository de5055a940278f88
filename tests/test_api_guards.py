"""The API's bearer token and rate limit: on a real server with both set, and the token bucket
against a hand calculation with a fake clock."""

from __future__ import annotations

import pytest

from api.guards import TokenBuckets
from tests.api_support import api_server

TOKEN = "s3cret-token-for-the-test"
RATE = 6  # requests a minute: small enough for a test to pass it


def test_token_bucket_by_hand():
    """6 a minute = one every 10 s, bursts of 6: the 7th at once waits 10 s; 5 s later, 5 s."""
    now = [100.0]
    buckets = TokenBuckets(RATE, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(RATE)] == [0.0] * RATE
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 5
    assert buckets.take("a") == pytest.approx(5.0)
    now[0] += 5
    assert buckets.take("a") == 0.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    log = tmp_path_factory.mktemp("api-guards") / "streamlit.log"
    with api_server(log, WORKBENCH_API_TOKEN=TOKEN,
                    WORKBENCH_API_REQUESTS_PER_MINUTE=str(RATE)) as url:
        yield url + "/api", log


@pytest.mark.slow
def test_token_then_rate_limit(guarded):
    """In order, within one minute's allowance: health needs no token; without it, or with a
    wrong one, 401; with it, 200; then a burst past the allowance gets 429 with Retry-After."""
    import httpx

    base, log = guarded
    with httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/health").status_code == 200
        refused = client.get("/models")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/docs").status_code == 401
        allowed = client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and TOKEN not in allowed.text
        statuses = [client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"})
                    for _ in range(RATE)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].json()["error"] == "RateLimited"
        assert client.get("/health").status_code == 200  # probes are never limited
    assert TOKEN not in log.read_text()
