"""Sparse autoencoders: activation collection and training throughput on the GPT-2-small-shaped
model at layer 6 with an 8x SAE (d_sae 6,144), the projected time for 1M tokens (one pass of
collection plus one epoch of training; target <= 20 minutes on 2 cores), and the peak extra
resident memory while collecting, for two corpus sizes: the buffer is on disk, so it should not
grow with the number of tokens. Also the demo model's acceptance run (4x TopK SAE at the middle
layer, 30k tokens, 600 steps; target <= 2 minutes). No peer: SAELens can't be installed beside
TransformerLens 4. Torch threads: 2 (the target's cores) unless BENCH_TORCH_THREADS says otherwise.
"""

from __future__ import annotations

import tempfile
import time

from bench.harness import Entry, bench_threads, entry, small_gpt2_dir
from bench.logit_lens import peak_extra_mb

LAYER = 6
WINDOW = 128
COLLECT_TOKENS = (4_000, 16_000)
WARM_UP_TOKENS = 500  # a first collection grows the heap once; not what a corpus costs
TRAIN_STEPS, TRAIN_BATCH = 8, 1024
MILLION = 1_000_000
TARGET_MINUTES = 20
TARGET_CORES = 2  # the target is for 2 cores, so both run torch threads


def sample_texts(n: int) -> list[str]:
    from interp.sae.runs import bundled_corpus

    return bundled_corpus()[:n]


def run() -> list[Entry]:
    with bench_threads(default=TARGET_CORES) as threads:
        return measure(threads)


def measure(threads: int) -> list[Entry]:
    from interp.models import load_model
    from interp.sae import TrainingConfig, collect_activations, hook_name
    from interp.sae.training import Trainer

    model = load_model(str(small_gpt2_dir()), device="cpu")
    hook = hook_name("resid_pre", LAYER, model.info.n_layers)
    texts = sample_texts(8_000)
    warm_up = collect_activations(model, texts, hook, tempfile.mkdtemp(prefix="bench-sae-"),
                                  window=WINDOW, max_tokens=WARM_UP_TOKENS)
    warm_up.delete()
    entries, buffers, timings = [], [], []
    for n_tokens in COLLECT_TOKENS:
        folder = tempfile.mkdtemp(prefix="bench-sae-")
        kept = []

        def collect(folder=folder, n_tokens=n_tokens, kept=kept):
            kept.append(collect_activations(model, texts, hook, folder, window=WINDOW,
                                            max_tokens=n_tokens))

        extra_mb, seconds, how = peak_extra_mb(collect)
        buffer = kept[-1]
        buffers.append(buffer)
        timings.append((buffer.n_rows, seconds))
        entries.append(entry(f"sae collect {buffer.n_rows} tokens L{LAYER}", seconds, note=(
            f"{buffer.n_rows / seconds:,.0f} tokens/s; peak extra RSS {extra_mb:.0f} MB ({how}); buffer "
            f"{buffer.n_rows * buffer.d_in * 4 / 2**20:.0f} MB on disk; {threads} thread(s)")))
    config = TrainingConfig(architecture="topk", expansion=8, k=32, steps=TRAIN_STEPS + 1,
                            batch_size=TRAIN_BATCH, eval_every=10**6, resample_every=0,
                            threads=None)
    trainer = Trainer(buffers[-1], config)
    trainer.train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        trainer.train_step()
    seconds = time.perf_counter() - start
    train_rate = TRAIN_STEPS * TRAIN_BATCH / seconds
    # Each collection pays a fixed cost (tokenizing, the hook's width, the plain route's probe)
    # that 1M tokens pay once: the rate per token is the slope between the two sizes.
    (small_rows, small_s), (large_rows, large_s) = timings
    collect_rate = (large_rows - small_rows) / (large_s - small_s)
    fixed_s = max(0.0, small_s - small_rows / collect_rate)
    projected = (fixed_s + MILLION / collect_rate + MILLION / train_rate) / 60
    entries.append(entry(f"sae train 8x TopK step (batch {TRAIN_BATCH})", seconds / TRAIN_STEPS,
                         note=f"{train_rate:,.0f} tokens/s; d_sae {trainer.sae.config.d_sae}"))
    entries.append(entry("sae projected 1M tokens (collect + 1 epoch)", projected * 60, note=(
        f"{projected:.1f} min (target <= {TARGET_MINUTES} min): collect "
        f"{MILLION / collect_rate / 60:.1f} min ({collect_rate:,.0f} tokens/s between the two "
        f"sizes, plus {fixed_s:.1f} s once) + train {MILLION / train_rate / 60:.1f} min; "
        f"{'met' if projected <= TARGET_MINUTES else 'NOT met'}")))
    for buffer in buffers:
        buffer.delete()
    entries.append(demo_acceptance())
    return entries


def demo_acceptance() -> Entry:
    from interp.models import load_model
    from interp.sae import TrainingConfig, hook_name
    from interp.sae.runs import bundled_corpus, train_on_corpus
    from tests.test_sae_demo import DEMO_SETTINGS

    model = load_model("demo", device="cpu")
    layer = model.info.n_layers // 2
    start = time.perf_counter()
    run = train_on_corpus(model, bundled_corpus(), hook_name("resid_pre", layer,
                                                             model.info.n_layers),
                          TrainingConfig(**DEMO_SETTINGS), max_tokens=30_000)
    seconds = time.perf_counter() - start
    m = run.metrics
    return entry("sae demo 4x TopK, collect + train + assess", seconds, note=(
        f"explained variance {m.explained_variance:.3f}, L0 {m.l0:.1f}, CE loss recovered "
        f"{m.loss_recovered:.3f}; target <= 120 s: {'met' if seconds <= 120 else 'NOT met'}"))
