"""Core costs on the GPT-2-small-shaped model: loading, one forward pass, peak memory.

Peer: the raw Hugging Face `GPT2LMHeadModel` (eager attention) on the same folder, since every
page pays our loading path (TransformerLens' bridge) on top of it.
"""

from __future__ import annotations

import resource
import time

import torch

from bench.harness import Entry, bench_prompt_tokens, best_time, entry, small_gpt2_dir


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> list[Entry]:
    from transformers import GPT2LMHeadModel

    from interp.models import load_model

    folder = small_gpt2_dir()
    start = time.perf_counter()
    ours = load_model(str(folder), device="cpu")
    ours_load = time.perf_counter() - start
    start = time.perf_counter()
    peer = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    peer_load = time.perf_counter() - start

    tokens = bench_prompt_tokens(ours, 20)

    def peer_forward():
        with torch.no_grad():
            return peer(tokens).logits

    ours_forward = best_time(lambda: ours.logits(tokens), repeats=5)
    peer_forward_s = best_time(peer_forward, repeats=5)
    same = torch.allclose(ours.logits(tokens), peer_forward(), atol=1e-4)
    return [
        entry("load (GPT-2-small shape)", ours_load, "transformers GPT2LMHeadModel", peer_load,
              "ours boots a TransformerLens bridge around the HF model"),
        entry("forward, 20 tokens", ours_forward, "transformers GPT2LMHeadModel", peer_forward_s,
              f"logits equal to the peer's within 1e-4: {same}"),
        entry("peak RSS after both loads (MB)", peak_rss_mb(), None, None,
              "resident memory of the benchmark process, not seconds"),
    ]
