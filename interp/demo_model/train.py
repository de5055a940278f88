"""Train the bundled demo model: `python -m interp.demo_model.train [--out DIR]`.

Generates the seeded corpus, trains the tokenizer, packs the examples with repeated random-token
sequences into full 128-token windows (`packing.py`), and trains a small GPT-2 on them (fixed
seeds, deterministic torch ops, one CPU thread by default); prints the learning curve and
held-out task accuracies (of the exponential moving average of the weights, which is what is
saved), then saves safetensors + config + tokenizer, reloads the folder through
TransformerLens' `TransformerBridge.boot_transformers`, measures everything again on the
bridge, searches the ground-truth heads and the induction circuit, and writes `metrics.json`
and `ground_truth.json` next to the weights.
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

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from interp.demo_model import evaluate, packing
from interp.models import DEMO_MODEL_DIR

DEFAULT_OUT = DEMO_MODEL_DIR

ARCH = {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": packing.CONTEXT}
# Half of GPT-2's 4 x d_model: training on this CPU is the budget, and the MLPs only need to
# hold the facts and the planted ratios.
MLP_WIDTH = 256



def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(vocab_size: int, bos_id: int) -> GPT2LMHeadModel:
    """A fresh GPT-2 of the demo model's shape, with no dropout."""
    config = GPT2Config(
        vocab_size=vocab_size,
        n_inner=MLP_WIDTH,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        **ARCH,  # type: ignore[arg-type]  # the config's keywords are typed one by one
    )
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wpe.weight.copy_(sinusoidal_positions(ARCH["n_positions"], ARCH["n_embd"]))
    return model


# Scale of the sinusoidal start of the learned position embeddings (token embeddings start at
# std 0.02): position p - 1 is then a fixed linear map of position p, a structure a
# previous-token head can use from the first step instead of waiting for it to be learned.
POSITION_INIT_SCALE = 0.05


def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    """[n_positions, d_model] sines and cosines of geometric frequencies (Vaswani et al. 2017),
    times POSITION_INIT_SCALE: the initial value of GPT-2's learned position embeddings."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return POSITION_INIT_SCALE * table


def earlier_stages(init_from: Path | None) -> list[dict]:
    """The `stages` of the run a second stage starts from (its metrics.json), or none."""
    if init_from is None or not (init_from / "metrics.json").is_file():
        return []
    return json.loads((init_from / "metrics.json").read_text()).get("stages", [])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def quick_eval(runner: evaluate.Runner) -> str:
    """One progress line of held-out accuracies on small prompt sets."""
    ioi = evaluate.ioi_eval(runner, n=60)
    comp = evaluate.ioi_eval(runner, n=60, templates="test")
    agr = evaluate.agreement_eval(runner, n=100)
    unseen = evaluate.agreement_eval(runner, n=100, openers="unseen")
    stacked = evaluate.agreement_eval(runner, n=100, n_attractors=2)
    fact = evaluate.fact_eval(runner)
    rnd = evaluate.random_induction_eval(runner, n=40)
    bias = evaluate.bias_eval(runner)
    return (
        f"ioi {min(ioi['frac_positive_ABBA'], ioi['frac_positive_BABA']):.2f} "
        f"comp {min(comp['frac_positive_ABBA'], comp['frac_positive_BABA']):.2f} "
        f"| agr {agr['frac_positive']:.2f} unseen {unseen['frac_positive']:.2f} pp2 {stacked['frac_positive']:.2f} "
        f"| facts {fact['top1']:.2f} | random induction {rnd['top1_repeated']:.2f} "
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
    parser.add_argument("--steps", type=int, default=6500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--ema", type=float, default=0.995, help="decay of the weight average that is saved"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--restart-share",
        type=float,
        default=packing.RESTART_SHARE,
        help="share of window cuts where the cut example restarts the next window whole",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from a saved model folder (its weights and tokenizer) instead of a new model",
    )
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

    n_windows = args.steps * args.batch_size
    start_tokenizer = None
    if args.init_from is not None:
        from transformers import AutoTokenizer

        start_tokenizer = AutoTokenizer.from_pretrained(args.init_from)
    windows, labels, tokenizer = packing.corpus_windows(
        n_windows, args.seed, start_tokenizer, restart_share=args.restart_share)
    n_tokens = n_windows * packing.CONTEXT
    print(
        f"corpus: {n_windows} windows of {packing.CONTEXT} tokens ({n_tokens} tokens), vocab {len(tokenizer)} ({time.time() - started:.0f} s)",
        flush=True,
    )

    set_seed(args.seed)
    if args.init_from is not None:
        # A second stage: the weights (and tokenizer) of an earlier run, trained on
        # `--seed`'s corpus draw.
        model = GPT2LMHeadModel.from_pretrained(args.init_from, attn_implementation="eager")
    else:
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
        batch = slice(step * args.batch_size, (step + 1) * args.batch_size)
        loss = model(torch.tensor(windows[batch]), labels=torch.tensor(labels[batch])).loss
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
        "architecture": {**ARCH, "n_inner": MLP_WIDTH},
        "n_params": n_params,
        "n_windows": n_windows,
        "n_tokens": n_tokens,
        # Every corpus the weights were trained on, earlier stages' first (`--init-from`).
        "stages": earlier_stages(args.init_from) + [{
            "seed": args.seed, "n_windows": n_windows,
            "n_examples": packing.corpus_size(n_windows), "restart_share": args.restart_share}],
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
            # The head search and the circuit run on the HF model (the same weights; the
            # hook_z emulation equals the bridge's, see tests/test_demo_model.py), which is faster.
            ground_truth = evaluate.ground_truth(evaluate.as_runner(ema, tokenizer), ema)
            for line in evaluate.ground_truth_lines(ground_truth):
                print(line, flush=True)
            (args.out / "ground_truth.json").write_text(json.dumps(ground_truth, indent=2) + "\n")
    record["total_seconds"] = round(time.time() - started, 1)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"done in {record['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
