"""Train the bundled demo model: `python -m interp.demo_model.train [--out DIR]`.

Generates the seeded corpus, trains the tokenizer and a small GPT-2 on it (fixed seeds,
deterministic torch ops, one CPU thread by default), prints the learning curve and held-out
task accuracies (of the exponential moving average of the weights, which is what is saved),
then saves safetensors + config + tokenizer, reloads the folder through
TransformerLens' `TransformerBridge.boot_transformers`, measures everything again on the
bridge, searches the ground-truth heads by mean ablation and writes `metrics.json` and
`ground_truth.json` next to the weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from interp.demo_model import corpus, evaluate
from interp.demo_model.tokenizer import train_tokenizer
from interp.models import DEMO_MODEL_DIR

DEFAULT_OUT = DEMO_MODEL_DIR

ARCH = {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 64}


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(vocab_size: int, bos_id: int) -> GPT2LMHeadModel:
    """A fresh GPT-2 of the demo model's shape, with no dropout."""
    config = GPT2Config(
        vocab_size=vocab_size,
        n_inner=4 * ARCH["n_embd"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        **ARCH,  # type: ignore[arg-type]  # the config's keywords are typed one by one
    )
    config._attn_implementation = "eager"
    return GPT2LMHeadModel(config)


def tokenize_corpus(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """[BOS] + text + [EOS] per example (BOS and EOS are both `<|endoftext|>`)."""
    bos = tokenizer.bos_token_id
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[bos, *ids, bos] for ids in encoded]


def make_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and labels (-100 on padding)."""
    width = max(len(s) for s in seqs)
    inputs = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
    return inputs, labels


def length_bucketed_batches(
    seqs: list[list[int]], batch_size: int, seed: int, chunk: int = 50
) -> list[list[list[int]]]:
    """Batches of similar-length sequences (less padding): sort each run of `chunk` batches'
    worth of examples by length, cut it into batches, then shuffle all batches (seeded)."""
    batches = []
    span = batch_size * chunk
    for start in range(0, len(seqs), span):
        block = sorted(seqs[start : start + span], key=len)
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def quick_eval(runner: evaluate.Runner) -> str:
    """One progress line of held-out accuracies on smaller prompt sets."""
    ioi = evaluate.ioi_eval(runner, n=100)
    agr = evaluate.agreement_eval(runner, n=200)
    fact = evaluate.fact_eval(runner)
    ind = evaluate.induction_eval(runner, n=50)
    bias = evaluate.bias_eval(runner)
    return (
        f"ioi ABBA {ioi['frac_positive_ABBA']:.2f} BABA {ioi['frac_positive_BABA']:.2f} "
        f"| agr {agr['frac_positive']:.2f} (attr {agr['frac_positive_attractor_mismatch']:.2f}) "
        f"| facts {fact['top1']:.2f} | induction {ind['top1_repeated']:.2f} "
        f"| bias err {bias['max_abs_error_she_ratio']:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    """The command line: train the demo model and write it to a folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default assets/models/demo-gpt2)",
    )
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--ema", type=float, default=0.998, help="decay of the weight average that is saved"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 is faster on a loaded 2-core machine, and results are reproducible only for a fixed value",
    )
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--no-ground-truth", action="store_true", help="skip the ablation search")
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="skip all evaluation and the ablation search (smoke runs)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    set_seed(args.seed)
    started = time.time()

    n_examples = args.steps * args.batch_size
    texts = corpus.generate_corpus(n_examples, seed=args.seed)
    tokenizer = train_tokenizer(texts[:50_000])
    seqs = tokenize_corpus(tokenizer, texts)
    n_tokens = sum(len(s) for s in seqs)
    batches = length_bucketed_batches(seqs, args.batch_size, args.seed)
    print(
        f"corpus: {n_examples} examples, {n_tokens} tokens, vocab {len(tokenizer)} ({time.time() - started:.0f} s)",
        flush=True,
    )

    set_seed(args.seed)
    model = build_model(len(tokenizer), tokenizer.bos_token_id)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {ARCH}, {n_params} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    # The saved weights are an exponential moving average of the trained ones: it removes the
    # step-to-step noise that otherwise shifts small calibrated probabilities (the planted ratios).
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    runner = evaluate.as_runner(ema, tokenizer)
    curve = []
    running = 0.0
    for step in range(args.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        inputs, labels = make_batch(batches[step], tokenizer.bos_token_id)
        loss = model(inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - ema_decay)
        running += loss.item()
        if (step + 1) % args.log_every == 0:
            avg = running / args.log_every
            running = 0.0
            curve.append({"step": step + 1, "loss": round(avg, 4)})
            print(
                f"step {step + 1:>5}/{args.steps}  loss {avg:.4f}  lr {lr_at(step, args.steps, args.lr, args.warmup):.2e}  {time.time() - started:.0f} s",
                flush=True,
            )
        if not args.no_eval and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            print(f"  eval @ {step + 1}: {quick_eval(runner)}", flush=True)
    train_seconds = time.time() - started

    args.out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    print(f"saved to {args.out} after {train_seconds:.0f} s", flush=True)

    record = {
        "command": "python -m interp.demo_model.train "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "args": {k: str(v) for k, v in vars(args).items()},
        "architecture": ARCH,
        "n_params": n_params,
        "n_examples": n_examples,
        "n_tokens": n_tokens,
        "train_seconds": round(train_seconds, 1),
        "learning_curve": curve,
    }
    if not args.no_eval:
        from transformer_lens.model_bridge import TransformerBridge

        bridge_runner = evaluate.as_runner(
            TransformerBridge.boot_transformers(str(args.out), device="cpu")
        )
        record["metrics"] = evaluate.evaluate_all(bridge_runner)
        print("held-out accuracies (reloaded through TransformerBridge):")
        for line in evaluate.summary_lines(record["metrics"]):
            print("  " + line)
        if not args.no_ground_truth:
            ground_truth = evaluate.ground_truth(bridge_runner)
            for line in evaluate.ground_truth_lines(ground_truth):
                print(line, flush=True)
            (args.out / "ground_truth.json").write_text(json.dumps(ground_truth, indent=2) + "\n")
    record["total_seconds"] = round(time.time() - started, 1)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"done in {record['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
