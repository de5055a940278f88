"""Shared by the attribution tests: the demo model, loaded once per test process."""

from __future__ import annotations

from functools import cache

from interp.models import load_model


@cache
def demo_model():
    """The bundled demo model (several attribution test files use it; loading it is slow)."""
    return load_model("demo", device="cpu")
