"""Activation patching sweeps on the GPT-2-small-shaped model, 20-token prompt.

Peer: TransformerLens' own `transformer_lens.patching` on the same bridge (one full forward pass
per patch). Ours (the staircase engine) batches patches, starts each patched run at the patched
layer from the cached corrupted run, skips the positions and patches a patch can't change,
adds a head's z patch through W_O, and runs the last block for the last query only. The results
must agree: the max absolute difference is printed and checked against a tolerance of 1e-4 of
the sweep's range. Ours is the median of 3 runs after a warm-up, one before and two after the
peer's single run (whose hundreds of forward passes already average over the machine's load).

Beside both, two floors. The FLOP floor: the FLOPs our engine cannot avoid (formula in
`sweep_flops`) divided by this machine's peak float32 matrix-multiply rate, measured in the same
run on the model's weight shapes with 2048 rows (`gemm_rate`). The sweep's matrices are
smaller (a block multiplies rows = patches x positions, from a few dozen to ~2,000, and the
last block one row per patch), and small products run well below that peak on this CPU, so the
FLOP floor is not reachable. The shape floor is: every matrix product the sweep makes is
recorded (`recorded_products`) and replayed alone on random data of the same shapes
(`replayer`), each sweep paired with a replay right after it so both see the same load; the formula's FLOPs (or the recorded ones, if fewer) at that replay's rate
are what the matrix products alone cost at these shapes, with nothing else (layer norms, GELU,
softmax, copies) run.
Targets: resid_pre at least 10x TransformerLens; all heads within 1.1x of the shape floor.

Both run with the same number of torch threads, 1 unless BENCH_TORCH_THREADS says otherwise:
on a 2-core machine shared with other jobs, two OpenMP threads contending with a busy core made
one forward pass ~10x slower (1.8 s instead of 0.17 s, measured), which swamps what is measured.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from bench.harness import Entry, bench_prompt_tokens, bench_threads, entry, small_gpt2_dir

TOLERANCE_OF_RANGE = 1e-4
SPEEDUP_TARGET = {"resid_pre": 10.0}
SHAPE_FLOOR_TARGET = {"z": 1.1}
GEMM_TOKENS = 2048


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def gemm_rate(d_model: int, d_mlp: int, repeats: int = 5) -> float:
    """FLOP/s of float32 matrix products [GEMM_TOKENS, in] @ [in, out] on the model's weight
    shapes (fused q/k/v, W_O, MLP in, MLP out), the best of `repeats` rounds."""
    shapes = [(d_model, 3 * d_model), (d_model, d_model), (d_model, d_mlp), (d_mlp, d_model)]
    operands = [(torch.randn(GEMM_TOKENS, n_in), torch.randn(n_in, n_out)) for n_in, n_out in shapes]
    flops = sum(2 * GEMM_TOKENS * n_in * n_out for n_in, n_out in shapes)
    for a, b in operands:  # warm-up
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in operands:
            a @ b
        best = min(best, time.perf_counter() - start)
    return flops / best


MATRIX_PRODUCTS = ("mm", "addmm", "bmm", "baddbmm")


def product_flops(op: str, shapes: tuple[tuple[int, ...], ...]) -> float:
    """2 x multiply-adds of one recorded product (addmm/baddbmm's first operand is the bias)."""
    a, b = shapes[-2:]
    return 2.0 * math.prod(a) * b[-1]


def recorded_products(run) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """The (op, operand shapes) of every matrix product `run()` makes, in order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    products = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in MATRIX_PRODUCTS:
                products.append((name, tuple(tuple(a.shape) for a in args
                                             if isinstance(a, torch.Tensor))))
            return func(*args, **(kwargs or {}))

    with Recorder():
        run()
    return products


def replayer(products) -> Callable[[], None]:
    """A function making the recorded products alone, on random operands of their shapes."""
    operands = [(getattr(torch, op), [torch.randn(shape) for shape in shapes])
                for op, shapes in products]

    def replay() -> None:
        for function, tensors in operands:
            function(*tensors)
    replay()  # warm-up
    return replay


def paired_floor_ratios(ours_run, replay, floor_share: float, rounds: int = 3) -> list[float]:
    """ours / shape floor for `rounds` back-to-back pairs (a sweep, then its products alone),
    so that both halves of each ratio see the same load on a shared machine."""
    ratios = []
    for _ in range(rounds):
        ours_s = timed(ours_run)[0]
        ratios.append(ours_s / (timed(replay)[0] * floor_share))
    return ratios


def sweep_flops(model, inputs, site: str, granularity: str) -> float:
    """The multiply-adds (x2) our engine cannot avoid for one sweep, with n positions, d =
    d_model, D = d_mlp, V = vocabulary, m = n - f where f is the first position a patch
    changes (earlier ones are cached; a patch before the first corrupted token is skipped):

      block, m queries:          2m(3d^2 + d^2 + 2dD) + 4mnd     (q/k/v, W_O, MLP; QK^T, PV)
      MLP alone (mid-block):     4mdD                             (+ 2m d_head d for a z patch)
      last block:                2(2m d^2) + 2(2d^2) + 4dD + 4nd  (k/v of m positions; q, W_O,
                                                                  MLP of the last one)
      clean and corrupted runs:  2 x (layers x block with m = n, + 2dV at the last position)

    times the number of prompts; layer norms, GELU, softmax and the two-column logit
    difference are not counted (they are not matrix products).
    """
    from interp.patching.runs import Patch, selectors

    info = model.info
    n, d, big_d, layers = inputs.n_positions, info.d_model, info.d_mlp, info.n_layers

    def block(m: int) -> float:
        return 2 * m * (4 * d * d + 2 * d * big_d) + 4 * m * n * d

    def last_block(m: int) -> float:
        return 4 * m * d * d + 4 * d * d + 4 * d * big_d + 4 * n * d

    total = 2 * (layers * block(n) + 2 * d * info.d_vocab)
    first_corrupted = inputs.first_corrupted_position
    for layer in range(layers):
        for index in selectors(site, granularity, info.n_heads, n):
            p = Patch(site, layer, index)
            first = p.first_changed(first_corrupted)
            if first is None:
                continue
            m = n - first
            start, mid_block = p.entry
            if mid_block:
                total += 4 * m * d * big_d + (2 * m * info.d_head * d if site == "z" else 0)
                start += 1
            total += sum(block(m) for _ in range(start, layers - 1))
            if start <= layers - 1:
                total += last_block(m)
    return total * inputs.n_prompts


def compare(name: str, ours_s: float, ours: torch.Tensor, peer_s: float, peer: torch.Tensor,
            peer_name: str, floor_s: float, flops: float, of_shape_floor: float, key: str) -> Entry:
    difference = float((ours - peer).abs().max())
    value_range = float(peer.max() - peer.min())
    tolerance = TOLERANCE_OF_RANGE * max(value_range, 1e-6)
    within = difference <= tolerance
    speedup = peer_s / ours_s
    of_floor = ours_s / floor_s
    targets = []
    if key in SPEEDUP_TARGET:
        goal = SPEEDUP_TARGET[key]
        targets.append(f"target >= {goal:g}x TL: {'OK' if speedup >= goal else 'MISSED'}")
    if key in SHAPE_FLOOR_TARGET:
        goal = SHAPE_FLOOR_TARGET[key]
        targets.append(f"target <= {goal:g}x shape floor: "
                       f"{'OK' if of_shape_floor <= goal else 'MISSED'}")
    note = (f"max |ours - peer| = {difference:.3g} (range {value_range:.3g}, tolerance "
            f"{tolerance:.3g}): {'OK' if within else 'MISMATCH'}; speed-up {speedup:.2f}x; "
            f"FLOP floor {flops / 1e9:.1f} GFLOP = {floor_s:.3f} s at peak, ours {of_floor:.2f}x; "
            f"ours {of_shape_floor:.2f}x the shape floor (median of paired runs); "
            + "; ".join(targets))
    print(f"{name}: ours {ours_s:.3f} s, TL {peer_s:.3f} s; {note}",
          flush=True)
    if not within:
        raise AssertionError(f"{name}: our patching differs from TransformerLens': {note}")
    return entry(name, ours_s, peer_name, peer_s, note)


def run() -> list[Entry]:
    with bench_threads() as threads:
        return compare_sweeps(threads)


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
    rate = gemm_rate(model.info.d_model, model.info.d_mlp)
    print(f"float32 GEMM rate, {threads} thread(s), model shapes x {GEMM_TOKENS} tokens: "
          f"{rate / 1e9:.1f} GFLOP/s", flush=True)

    entries = []
    for label, site, granularity, peer_function, peer_name in (
        ("resid_pre sweep 12 layers x 20 pos", "resid_pre", "layer_pos",
         tl_patching.get_act_patch_resid_pre, "TL get_act_patch_resid_pre"),
        ("all heads z sweep 12 x 12 (all pos)", "z", "head",
         tl_patching.get_act_patch_attn_head_out_all_pos, "TL get_act_patch_attn_head_out_all_pos"),
    ):
        ours_run = partial(patch, model, inputs, metric, site=site, granularity=granularity)
        _, warm = timed(ours_run)  # warm-up (and the model's one-time self-check)
        if warm.options.get("engine") != "staircase":
            raise AssertionError(f"{label}: the staircase engine was not used: {warm.options}")
        # Ours runs before and twice after the peer, so the median brackets the peer's window
        # of time on a machine whose load drifts over minutes.
        before, ours_result = timed(ours_run)
        with torch.no_grad():
            # One run: 240 (144) forward passes already average over the machine's load.
            peer_s, peer = timed(partial(peer_function, bridge, corrupted, clean_cache, peer_metric))
        ours_s = statistics.median([before, timed(ours_run)[0], timed(ours_run)[0]])
        flops = sweep_flops(model, inputs, site, granularity)
        products = recorded_products(ours_run)
        recorded = sum(product_flops(op, shapes) for op, shapes in products)
        replay = replayer(products)
        floor_share = min(flops, recorded) / recorded
        ratios = paired_floor_ratios(ours_run, replay, floor_share)
        replayed = min(timed(replay)[0] for _ in range(2))
        print(f"{label}: {len(products)} matrix products, {recorded / 1e9:.1f} GFLOP recorded "
              f"({recorded / flops:.2f}x the formula), replayed alone in {replayed:.3f} s "
              f"({recorded / replayed / 1e9:.1f} GFLOP/s at these shapes); ours / shape floor "
              f"in paired runs: {', '.join(f'{r:.2f}' for r in ratios)}", flush=True)
        entries.append(compare(f"{label}, {threads} thread(s)", ours_s, ours_result.values, peer_s,
                               peer.cpu(), peer_name, flops / rate, flops,
                               statistics.median(ratios), site))
    return entries
