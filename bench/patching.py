"""Activation patching sweeps on the GPT-2-small-shaped model, 20-token prompt.

Peer: TransformerLens' own `transformer_lens.patching` on the same bridge (one full forward pass
per patch). Ours batches patches, starts each patched run at the patched layer from the cached
corrupted run, and unembeds only the last position. The results must agree: the max absolute
difference is printed and checked against a tolerance of 1e-4 of the sweep's range. Ours is the
median of 3 runs after a warm-up, one before and two after the peer's single run (whose
hundreds of forward passes already average over the load of a shared machine).

Both run with the same number of torch threads, 1 unless BENCH_TORCH_THREADS says otherwise:
on a 2-core machine shared with other jobs, two OpenMP threads contending with a busy core made
one forward pass ~10x slower (1.8 s instead of 0.17 s, measured), which swamps what is measured.
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial

import torch

from bench.harness import Entry, bench_prompt_tokens, entry, small_gpt2_dir

TOLERANCE_OF_RANGE = 1e-4


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def compare(name: str, ours_s: float, ours: torch.Tensor, peer_s: float, peer: torch.Tensor,
            peer_name: str) -> Entry:
    difference = float((ours - peer).abs().max())
    value_range = float(peer.max() - peer.min())
    tolerance = TOLERANCE_OF_RANGE * max(value_range, 1e-6)
    within = difference <= tolerance
    speedup = peer_s / ours_s
    note = (f"max |ours - peer| = {difference:.3g} (range {value_range:.3g}, tolerance "
            f"{tolerance:.3g}): {'OK' if within else 'MISMATCH'}; speed-up {speedup:.1f}x "
            f"(target >= 5x: {'OK' if speedup >= 5 else 'MISSED'})")
    print(f"{name}: {note}", flush=True)
    if not within:
        raise AssertionError(f"{name}: our patching differs from TransformerLens': {note}")
    return entry(name, ours_s, peer_name, peer_s, note)


def run() -> list[Entry]:
    threads_before = torch.get_num_threads()
    threads = int(os.environ.get("BENCH_TORCH_THREADS", "1"))
    torch.set_num_threads(threads)
    try:
        return compare_sweeps(threads)
    finally:
        torch.set_num_threads(threads_before)


def compare_sweeps(threads: int) -> list[Entry]:
    import transformer_lens.patching as tl_patching

    from interp.models import load_model
    from interp.patching import PatchingInputs, logit_diff_metric, patch

    model = load_model(str(small_gpt2_dir()), device="cpu")
    clean = bench_prompt_tokens(model, 20)
    corrupted = clean.clone()
    # The IOI-style swap: the subject " John" (second mention) becomes " Mary".
    john, mary = (model.to_tokens(word, prepend_bos=False)[0, 0].item() for word in (" John", " Mary"))
    corrupted[corrupted == john] = mary
    inputs = PatchingInputs(clean, corrupted)
    metric = logit_diff_metric([mary], [john])

    def peer_metric(logits):
        return (logits[:, -1, mary] - logits[:, -1, john]).mean()

    bridge = model.bridge
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(clean)

    entries = []
    for label, site, granularity, peer_function, peer_name in (
        ("resid_pre sweep 12 layers x 20 pos", "resid_pre", "layer_pos",
         tl_patching.get_act_patch_resid_pre, "TL get_act_patch_resid_pre"),
        ("all heads z sweep 12 x 12 (all pos)", "z", "head",
         tl_patching.get_act_patch_attn_head_out_all_pos, "TL get_act_patch_attn_head_out_all_pos"),
    ):
        ours_run = partial(patch, model, inputs, metric, site=site, granularity=granularity)
        ours_run()  # warm-up
        # Ours runs before and twice after the peer, so the median brackets the peer's window
        # of time on a machine whose load drifts over minutes.
        before, ours_result = timed(ours_run)
        with torch.no_grad():
            # One run: 240 (144) forward passes already average over the machine's load.
            peer_s, peer = timed(partial(peer_function, bridge, corrupted, clean_cache, peer_metric))
        ours_s = statistics.median([before, timed(ours_run)[0], timed(ours_run)[0]])
        entries.append(compare(f"{label}, {threads} thread(s)", ours_s, ours_result.values, peer_s,
                               peer.cpu(), peer_name))
    return entries
