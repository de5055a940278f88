"""Core costs on the GPT-2-small-shaped model: loading, one forward pass, peak memory.

Peer: the raw Hugging Face `GPT2LMHeadModel` (eager attention) on the same folder, since every
page pays our loading path (TransformerLens' bridge) on top of it.
"""

from __future__ import annotations

import resource

import torch

from bench.harness import Entry, bench_prompt_tokens, best_time, entry, small_gpt2_dir


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> list[Entry]:
    from transformers import GPT2LMHeadModel

    from interp.models import load_model

    folder = small_gpt2_dir()

    def load_ours():
        return load_model(str(folder), device="cpu")

    def load_peer():
        return GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()

    # Both loads read the same files; warm-up runs put them in the page cache for both.
    ours_load = best_time(load_ours, repeats=3)
    peer_load = best_time(load_peer, repeats=3)
    ours, peer = load_ours(), load_peer()

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
