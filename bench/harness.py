"""Timing helpers and the GPT-2-small-shaped benchmark model shared by every benchmark."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results.json"
GPT2_SMALL_SHAPE = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024)


@dataclass(frozen=True)
class Entry:
    """One row of results.json; ratio = peer_s / ours_s (above 1: we are faster)."""

    name: str
    ours_s: float
    peer: str | None
    peer_s: float | None
    ratio: float | None
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def entry(name: str, ours_s: float, peer: str | None = None, peer_s: float | None = None,
          note: str = "") -> Entry:
    ratio = peer_s / ours_s if peer_s is not None and ours_s > 0 else None
    return Entry(name, ours_s, peer, peer_s, ratio, note)


def best_time(function: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of `function` over `repeats` runs after `warmup` runs (seconds)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@cache
def small_gpt2_dir() -> Path:
    """A GPT-2-small-shaped model with random weights (speed doesn't depend on the weights)."""
    import tempfile

    from interp.random_models import save_random_gpt2

    folder = Path(tempfile.mkdtemp(prefix="bench-gpt2-small-"))
    return save_random_gpt2(folder, seed=0, **GPT2_SMALL_SHAPE)


def bench_prompt_tokens(model, n_tokens: int = 20) -> torch.Tensor:
    """A prompt of exactly `n_tokens` tokens (BOS included) for the benchmark model."""
    text = ("When Mary and John went to the store, John gave a drink to Mary because she was "
            "thirsty after the long walk home from the market")
    tokens = model.to_tokens(text)[:, :n_tokens]
    if tokens.shape[1] != n_tokens:
        raise ValueError(f"benchmark prompt has only {tokens.shape[1]} tokens")
    return tokens


@contextlib.contextmanager
def bench_threads(default: int = 1) -> Iterator[int]:
    """Torch threads for a benchmark: `default` (1 unless a target names more cores) unless
    BENCH_TORCH_THREADS says otherwise (on a small machine shared with other jobs, extra OpenMP
    threads contend and swamp what is measured); the previous setting comes back afterwards."""
    before = torch.get_num_threads()
    threads = int(os.environ.get("BENCH_TORCH_THREADS", str(default)))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
