"""Shared by the API tests: the real server (`streamlit run streamlit_app.py`, offline, on a free
port) and a comparison of JSON documents that tolerates float rounding.

The server runs torch on one thread and the test process on its own count, so sums may round in
another order: numbers are compared to a relative 1e-4 (absolute 1e-6), everything else exactly.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.browser import app_server

# Custom models off, as on a public deployment; the rate limit out of the way unless a test
# module sets its own.
SERVER_ENV = {"WORKBENCH_ALLOW_CUSTOM_MODELS": "false", "WORKBENCH_TORCH_THREADS": "1",
              "WORKBENCH_API_REQUESTS_PER_MINUTE": "100000"}


@contextlib.contextmanager
def api_server(log_path: Path, **env: str) -> Iterator[str]:
    """The app's server with `env` on top of SERVER_ENV; yields its base URL (no /api)."""
    with app_server(sys.executable, log_path, {**SERVER_ENV, **env}) as (url, _process):
        yield url


def differences(ours, reference, where: str = "$") -> list[str]:
    """Where two JSON values differ (numbers within rounding count as equal)."""
    if isinstance(reference, bool) or isinstance(ours, bool):
        return [] if ours == reference else [f"{where}: {ours!r} != {reference!r}"]
    if isinstance(reference, (int, float)) and isinstance(ours, (int, float)):
        close = math.isclose(ours, reference, rel_tol=1e-4, abs_tol=1e-6)
        return [] if close else [f"{where}: {ours!r} != {reference!r}"]
    if isinstance(reference, Mapping) and isinstance(ours, Mapping):
        if set(ours) != set(reference):
            return [f"{where}: keys {sorted(set(ours) ^ set(reference))} differ"]
        return [d for key in reference for d in differences(ours[key], reference[key],
                                                            f"{where}.{key}")]
    if isinstance(reference, list) and isinstance(ours, list):
        if len(ours) != len(reference):
            return [f"{where}: length {len(ours)} != {len(reference)}"]
        return [d for index, (a, b) in enumerate(zip(ours, reference, strict=True))
                for d in differences(a, b, f"{where}[{index}]")]
    return [] if ours == reference else [f"{where}: {ours!r} != {reference!r}"]
