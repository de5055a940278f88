"""Shared by the API tests: the real server (`streamlit run streamlit_app.py`, offline, on a free
port) and a comparison of JSON documents that tolerates float rounding.

The server runs torch on one thread and the test process on its own count, so sums may round in
another order: floats are compared within 1e-4 (relative, absolute below 1), the rest exactly.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.browser import app_server
from bench.concurrency import differences as export_differences

# Custom models off, as on a public deployment; the rate limit out of the way unless a test
# module sets its own.
SERVER_ENV = {"WORKBENCH_ALLOW_CUSTOM_MODELS": "false", "WORKBENCH_TORCH_THREADS": "1",
              "WORKBENCH_API_REQUESTS_PER_MINUTE": "100000"}


@contextlib.contextmanager
def api_server(log_path: Path, **env: str) -> Iterator[str]:
    """The app's server with `env` on top of SERVER_ENV; yields its base URL (no /api)."""
    with app_server(sys.executable, log_path, {**SERVER_ENV, **env}) as (url, _process):
        yield url


def differences(ours, reference) -> list[str]:
    """Where two JSON documents differ (bench.concurrency's comparison, at 1e-4)."""
    return export_differences(ours, reference, "$", tolerance=1e-4)
