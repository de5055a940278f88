"""Logit lens and DLA on the GPT-2-small-shaped model, each as a multiple of one forward pass.

Peer: TransformerLens' own route to a full lens, in the same run on the same bridge:
`run_with_cache`, `cache.accumulated_resid(apply_ln=True)` (the final LayerNorm recomputed per
row), `unembed`, `log_softmax`, top-5. Ours: `lens_of_ids` with k=5 and `ranks=False` (top-5
with log-probs, entropy, KL to the final distribution and the final top-5 candidates' log-probs
at every row: more than the peer computes), and, as a second row, with the page's default
`ranks=True` (the candidates' ranks too). Both must give the same top-5 as TransformerLens (ids
equal, log-probs within 1e-4). Targets: ours <= 4 forward passes and faster than
TransformerLens'; DLA <= 2 forward passes.

Each kind is timed in 3 interleaved rounds after a warm-up (forward, ours, TL, DLA; median per
kind), so a machine whose load drifts over minutes affects all of them alike.

Memory: the lens's peak extra resident memory at 1,024 tokens, ranks counted (target < 300
MB), read from the kernel's high-water mark of this process (VmHWM, reset first through
/proc/self/clear_refs) against the resident size just before the call, after glibc has handed
freed memory back (`malloc_trim`), so pages an earlier run freed can't hide new ones. The target
is read on the second call at that length; the first, shown too, also grows the heap once. A
plain forward pass at 1,024 tokens is measured the same way for comparison. tracemalloc is not
used: it misses torch's CPU allocations. Without /proc (not Linux), a psutil sampler (every
2 ms) stands in.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from pathlib import Path

import torch

from bench.harness import Entry, bench_threads, entry, small_gpt2_dir

N_TOKENS = 64
LONG_TOKENS = 1024
ROUNDS = 3
LENS_TARGET, DLA_TARGET, MEMORY_TARGET_MB = 4.0, 2.0, 300.0
TEXT = ("When Mary and John went to the store, John gave a drink to Mary because she was "
        "thirsty after the long walk home from the market. ")


def prompt_ids(model, n_tokens: int) -> list[int]:
    ids = model.to_tokens(TEXT * (n_tokens // 20 + 1))[0, :n_tokens].tolist()
    if len(ids) != n_tokens:
        raise ValueError(f"benchmark prompt has only {len(ids)} tokens")
    return ids


def tl_route(bridge, tokens: torch.Tensor, k: int = 5):
    """TransformerLens' logit lens, the way its docs write it: top-k log-probs per row."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
        resid = cache.accumulated_resid(apply_ln=True)  # [rows, batch, pos, d_model]
        log_probs = bridge.unembed(resid[:, 0]).log_softmax(-1)
        return log_probs.topk(k, dim=-1)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def release_freed_memory() -> None:
    """Return the heap's free pages to the OS (glibc), so the resident size is what is in use."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def peak_extra_mb(function) -> tuple[float, float, str]:
    """(peak extra resident MB while `function` runs, its seconds, how it was measured)."""
    gc.collect()
    release_freed_memory()
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    before = rss_bytes()
    if status.exists() and clear.exists():
        clear.write_text("5")  # resets VmHWM to the current resident size
        start = time.perf_counter()
        function()
        seconds = time.perf_counter() - start
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM"))
        peak = int(line.split()[1]) * 1024
        return (peak - before) / 2**20, seconds, "VmHWM (kernel high-water mark)"
    peak, done = before, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return (peak - before) / 2**20, seconds, "psutil RSS sampled every 2 ms"


def run() -> list[Entry]:
    with bench_threads() as threads:
        return measure(threads)


def measure(threads: int) -> list[Entry]:
    from interp.logit_lens import direct_logit_attribution, lens_of_ids
    from interp.models import load_model

    model = load_model(str(small_gpt2_dir()), device="cpu")
    bridge = model.bridge
    long_ids = prompt_ids(model, LONG_TOKENS)
    long_tokens = torch.tensor([long_ids])
    # The first call at this length also grows the process's heap and the libraries' workspaces
    # once (about 1 GB here, for a plain forward pass as much as for the lens): shown, but the
    # target is read on the second call, the cost every later call pays.
    cold_mb, _, how = peak_extra_mb(lambda: lens_of_ids(model, long_ids, k=5))
    lens_mb, lens_long_s, _ = peak_extra_mb(lambda: lens_of_ids(model, long_ids, k=5))
    forward_mb, forward_long_s, _ = peak_extra_mb(lambda: model.logits(long_tokens))

    ids = long_ids[:N_TOKENS]
    tokens = torch.tensor([ids])
    prompt = model.decode(ids[1:])
    kinds = {
        "forward": lambda: model.logits(tokens),
        "ours": lambda: lens_of_ids(model, ids, k=5, ranks=False),
        "ours_ranks": lambda: lens_of_ids(model, ids, k=5),
        "tl": lambda: tl_route(bridge, tokens),
        "dla": lambda: direct_logit_attribution(model, prompt),
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    outputs = {}
    for name, function in kinds.items():
        outputs[name] = function()  # warm-up
    for _ in range(ROUNDS):
        for name, function in kinds.items():
            gc.collect()
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    forward = median["forward"]
    ours, peer = outputs["ours"], outputs["tl"]
    same_ids = bool(torch.equal(ours.top_ids, peer.indices))
    difference = float((ours.top_log_probs - peer.values).abs().max())
    if not same_ids or difference > 1e-4:
        raise AssertionError(f"our lens differs from TransformerLens': same top-5 ids "
                             f"{same_ids}, max |log-prob difference| {difference:.3g}")
    ours_x, tl_x, dla_x = median["ours"] / forward, median["tl"] / forward, median["dla"] / forward
    ranks_x = median["ours_ranks"] / forward
    lens_note = (f"{threads} thread(s); forward {forward:.3f} s; ours = {ours_x:.2f} forward "
                 f"passes (target <= {LENS_TARGET:g}: {'OK' if ours_x <= LENS_TARGET else 'MISSED'}), "
                 f"TL = {tl_x:.2f} (faster than TL: {'OK' if ours_x < tl_x else 'MISSED'}); "
                 f"top-5 ids equal, max |log-prob difference| {difference:.2g}")
    ranks_note = (f"with the candidates' ranks (the page's default) = {ranks_x:.2f} forward "
                  f"passes ({'faster' if ranks_x < tl_x else 'slower'} than TL's {tl_x:.2f})")
    dla_note = (f"= {dla_x:.2f} forward passes (target <= {DLA_TARGET:g}: "
                f"{'OK' if dla_x <= DLA_TARGET else 'MISSED'})")
    memory_note = (f"peak extra memory {lens_mb:.0f} MB (target < {MEMORY_TARGET_MB:g} MB: "
                   f"{'OK' if lens_mb < MEMORY_TARGET_MB else 'MISSED'}; a plain forward pass "
                   f"at {LONG_TOKENS} tokens: {forward_mb:.0f} MB, {forward_long_s:.2f} s; the "
                   f"lens's first call at this length: {cold_mb:.0f} MB); measured by {how}")
    for line in (lens_note, ranks_note, dla_note, memory_note):
        print(line, flush=True)
    return [
        entry(f"logit lens {N_TOKENS} tokens, top-5, {threads} thr", median["ours"],
              "TL run_with_cache + accumulated_resid", median["tl"], lens_note),
        entry(f"logit lens + ranks {N_TOKENS} tokens, {threads} thr", median["ours_ranks"],
              "TL run_with_cache + accumulated_resid", median["tl"], ranks_note),
        entry(f"DLA {N_TOKENS} tokens, {threads} thr", median["dla"], "one forward pass",
              forward, dla_note),
        entry(f"logit lens {LONG_TOKENS} tokens (memory)", lens_long_s, None, None, memory_note),
    ]
