"""Circuits on the GPT-2-small-shaped model, one 15-token pair (20 for the curve).

Peer: TransformerLens 4.3's `attribution_patch(granularity="edge")` and `faithfulness`, one pair
at a time, on the same bridge. Ours scores every edge from one forward and one backward pass
(senders' outputs cached, gradients at every receiver's input), and measures a circuit by one
forward pass where each receiver's input is rebuilt from kept senders' live outputs plus ablated
senders' replacements, all circuits and pairs of a batch at once. Each row prints seconds,
forward-pass equivalents (seconds / one plain forward pass of the pair) and the ratio.
Targets: EAP <= 0.5 s, a 200-edge circuit's F <= 0.5 s per pair, EAP-IG (m = 5) <= 3 s, the
CPR/CMD curve over 20 pairs <= 15 s.
"""

from __future__ import annotations

import time

import torch

from bench.harness import Entry, bench_prompt_tokens, bench_threads, entry, small_gpt2_dir

N_TOKENS = 15
CURVE_PAIRS = 20


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def pairs(model, n: int):
    base = bench_prompt_tokens(model, N_TOKENS)
    clean = base.repeat(n, 1)
    corrupted = clean.clone()
    generator = torch.Generator().manual_seed(0)
    clean[:, 8] = torch.randint(1000, 20000, (n,), generator=generator)
    corrupted[:, 8] = torch.randint(1000, 20000, (n,), generator=generator)
    return clean, corrupted


def run() -> list[Entry]:
    from transformer_lens.tools.analysis import attribution_patching as tl

    from interp.circuits import data as circuit_data_module
    from interp.circuits import edge_scores, faithfulness_curve, measure_circuit, select_circuit
    from interp.models import load_model
    from interp.patching.results import logit_diff_metric

    model = load_model(str(small_gpt2_dir()), device="cpu")
    correct, wrong = 262, 286

    def data_of(n):
        clean, corrupted = pairs(model, n)
        return circuit_data_module.CircuitData(
            model.name, "bench", clean, corrupted, logit_diff_metric([correct] * n, [wrong] * n),
            tuple(str(t) for t in clean[0].tolist()))

    one, many = data_of(1), data_of(CURVE_PAIRS)

    def metric(logits):
        return logits[0, -1, correct] - logits[0, -1, wrong]

    entries = []
    with bench_threads() as threads:
        forward_s, _ = timed(lambda: model.logits(one.clean_tokens))
        forward_s = min(forward_s, timed(lambda: model.logits(one.clean_tokens))[0])
        edge_scores(model, one, "eap")  # warm-up
        ours_eap_s, scores = timed(lambda: edge_scores(model, one, "eap"))
        embedding = model.bridge.original_model.transformer.wte.weight
        embedding.requires_grad_(True)
        try:
            with model.exclusive() as bridge:
                peer_eap_s, peer = timed(lambda: tl.attribution_patch(
                    bridge, one.clean_tokens, one.corrupted_tokens, metric,
                    tl.EdgeAttributionConfig(granularity="edge")))
                circuit = select_circuit(scores, "top_n", 200, prune=False)
                peer_f_s, peer_f = timed(lambda: tl.faithfulness(
                    bridge, one.clean_tokens, one.corrupted_tokens, metric, peer.top_edges(200)))
        finally:
            embedding.requires_grad_(False)
        ours_f_s, ours_f = timed(lambda: measure_circuit(model, circuit, one, "resample",
                                                         complement=False))
        ig_s, _ = timed(lambda: edge_scores(model, one, "eap_ig", ig_steps=5))
        curve_s, curve = timed(lambda: faithfulness_curve(
            model, edge_scores(model, many, "eap"), many, "resample"))

    def note(seconds, target, extra=""):
        verdict = "meets" if seconds <= target else "MISSES"
        return (f"{seconds / forward_s:.1f} forward-pass equivalents (forward {forward_s:.3f} s); "
                f"target <= {target} s: {verdict}; {threads} thread(s){extra}")

    entries.append(entry("circuits: all-edge EAP, 1 pair", ours_eap_s, "TL attribution_patch(edge)",
                         peer_eap_s, note(ours_eap_s, 0.5, f"; {scores.n_edges} edges")))
    entries.append(entry("circuits: F of a 200-edge circuit, 1 pair", ours_f_s,
                         "TL faithfulness", peer_f_s,
                         note(ours_f_s, 0.5, f"; F ours {ours_f.faithfulness:.5f} vs TL "
                                             f"{peer_f.recovered:.5f}")))
    entries.append(entry("circuits: EAP-IG m=5, 1 pair", ig_s, None, None, note(ig_s, 3.0)))
    entries.append(entry(f"circuits: CPR/CMD curve, {CURVE_PAIRS} pairs", curve_s, None, None,
                         note(curve_s, 15.0, f"; CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}")))
    return entries
