"""Task accuracies and ground-truth heads of the demo model, measured on held-out prompts.

Each `*_eval` function runs one task of `interp.demo_model.corpus` on its held-out split and
returns plain numbers: IOI logit difference (indirect object minus subject) by name order,
agreement logit difference (correct minus wrong verb), fact-recall and induction top-1, and
the planted he/she ratios as measured. Mean ablation replaces chosen heads' outputs `z` (the
per-head attention output before W_O) by their mean over a reference set of same-task training
prompts; `find_ground_truth_heads` greedily collects the heads whose joint ablation halves a
task's metric. It works on a TransformerLens bridge (hooks `blocks.{l}.attn.hook_z`), on the
project's `LoadedModel`, or on a raw Hugging Face GPT-2 (the same hooks emulated on `c_proj`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.demo_model import corpus
from interp.demo_model.tokenizer import encode_with_bos, single_token_id
from interp.patching import ablation

Hook = tuple[str, Callable[..., Any]]
Head = tuple[int, int]

# Held-out prompt counts used by `evaluate_all` and the tests.
N_IOI = 400
N_AGREEMENT = 600
N_INDUCTION = 200
# Reference prompts (training split) whose mean head outputs replace ablated heads.
N_REFERENCE = 300


@dataclass
class Runner:
    """Uniform access to logits, with optional TransformerLens-named forward hooks."""

    forward: Callable[[torch.Tensor, Sequence[Hook]], torch.Tensor]
    tokenizer: Any
    n_layers: int
    n_heads: int

    def logits(self, tokens: torch.Tensor, fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(tokens, fwd_hooks)


def as_runner(model: Any, tokenizer: Any = None) -> Runner:
    """Wrap a `LoadedModel` (has `.bridge`), a `TransformerBridge`, or a HF GPT-2 + tokenizer."""
    if hasattr(model, "bridge") and hasattr(model, "hooked"):
        lm = model

        def forward_lm(tokens: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
            with lm.hooked(fwd_hooks=list(hooks)) as bridge:
                return bridge(tokens)

        return Runner(forward_lm, lm.tokenizer, lm.info.n_layers, lm.info.n_heads)
    if hasattr(model, "run_with_hooks"):
        bridge = model

        def forward_bridge(tokens: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
            if hooks:
                return bridge.run_with_hooks(tokens, fwd_hooks=list(hooks))
            return bridge(tokens)

        return Runner(forward_bridge, bridge.tokenizer, bridge.cfg.n_layers, bridge.cfg.n_heads)
    if hasattr(model, "transformer") and tokenizer is not None:
        return Runner(_hf_forward(model), tokenizer, model.config.n_layer, model.config.n_head)
    raise TypeError(
        f"cannot run {type(model).__name__}: pass a LoadedModel, a TransformerBridge, or a HF GPT-2 with its tokenizer"
    )


def _hf_forward(hf_model: Any) -> Callable[[torch.Tensor, Sequence[Hook]], torch.Tensor]:
    """Raw HF forward where `blocks.{l}.attn.hook_z` hooks act on the input of `c_proj`."""
    n_heads = hf_model.config.n_head

    def forward(tokens: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
        handles = []
        try:
            for name, fn in hooks:
                layer = _layer_of_z_hook(name)

                def pre_hook(module: Any, args: tuple, fn: Callable = fn) -> tuple:
                    x = args[0]
                    z = x.reshape(*x.shape[:-1], n_heads, -1)
                    out = fn(z, hook=None)
                    z = z if out is None else out
                    return (z.reshape(x.shape), *args[1:])

                handles.append(
                    hf_model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(pre_hook)
                )
            return hf_model(tokens).logits
        finally:
            for handle in handles:
                handle.remove()

    return forward


def _layer_of_z_hook(name: str) -> int:
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != "blocks" or parts[2:] != ["attn", "hook_z"]:
        raise ValueError(
            f"only blocks.{{l}}.attn.hook_z hooks are emulated on a HF model, got {name!r}"
        )
    return int(parts[1])


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad; returns tokens [batch, pos] and lengths [batch]. Causal attention means the
    padding never changes logits at real positions."""
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return tokens, torch.tensor([len(s) for s in seqs])


def _full_logits(
    runner: Runner, seqs: list[list[int]], hooks: Sequence[Hook] = (), batch: int = 128
) -> list[torch.Tensor]:
    """Logits [len_i, vocab] of every sequence."""
    out: list[torch.Tensor] = []
    for start in range(0, len(seqs), batch):
        chunk = seqs[start : start + batch]
        tokens, lengths = _pad(chunk, runner.tokenizer.bos_token_id)
        logits = runner.logits(tokens, hooks).float()
        out.extend(logits[i, : lengths[i]] for i in range(len(chunk)))
    return out


def last_logits(runner: Runner, texts: Sequence[str], hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Next-token logits [n, vocab] after each text (BOS prepended)."""
    seqs = [encode_with_bos(runner.tokenizer, t) for t in texts]
    return torch.stack([lg[-1] for lg in _full_logits(runner, seqs, hooks)])


def _ids(runner: Runner, words: Sequence[str]) -> torch.Tensor:
    return torch.tensor([single_token_id(runner.tokenizer, w) for w in words])


# ---------------------------------------------------------------------------------------------
# Task metrics
# ---------------------------------------------------------------------------------------------


def answer_logit_diffs(runner: Runner, logits: torch.Tensor, correct: Sequence[str],
                       wrong: Sequence[str]) -> torch.Tensor:
    """logit(correct word) - logit(wrong word) per row of last-position logits, shape [n]."""
    rows = torch.arange(len(correct))
    return logits[rows, _ids(runner, correct)] - logits[rows, _ids(runner, wrong)]


def ioi_logit_diffs(
    runner: Runner, prompts: Sequence[corpus.IOIPrompt], hooks: Sequence[Hook] = ()
) -> torch.Tensor:
    """logit(" IO") - logit(" S") at the end of each prompt, shape [n]."""
    logits = last_logits(runner, [p.text for p in prompts], hooks)
    return answer_logit_diffs(runner, logits, [p.io for p in prompts], [p.s for p in prompts])


def ioi_eval(runner: Runner, hooks: Sequence[Hook] = (), n: int = N_IOI) -> dict[str, float]:
    """IOI accuracy and logit difference on the held-out test prompts."""
    prompts = corpus.ioi_prompts("test", n, seed=1)
    logits = last_logits(runner, [p.text for p in prompts], hooks)
    io_ids = _ids(runner, [p.io for p in prompts])
    diffs = answer_logit_diffs(runner, logits, [p.io for p in prompts], [p.s for p in prompts])
    res = {"mean_logit_diff": diffs.mean().item()}
    for o in ("ABBA", "BABA"):
        sel = diffs[[i for i, p in enumerate(prompts) if p.order == o]]
        res[f"frac_positive_{o}"] = (sel > 0).float().mean().item()
    res["top1_is_io"] = (logits.argmax(-1) == io_ids).float().mean().item()
    return res


def agreement_diffs(
    runner: Runner, prompts: Sequence[corpus.AgreementPrompt], hooks: Sequence[Hook] = ()
) -> torch.Tensor:
    """logit(correct verb) - logit(wrong verb), shape [n]."""
    logits = last_logits(runner, [p.text for p in prompts], hooks)
    return answer_logit_diffs(runner, logits, [p.correct for p in prompts],
                              [p.wrong for p in prompts])


def agreement_eval(
    runner: Runner, hooks: Sequence[Hook] = (), n: int = N_AGREEMENT
) -> dict[str, float]:
    """Subject-verb agreement accuracy and logit difference on the held-out test prompts."""
    prompts = corpus.agreement_prompts("test", n, seed=1)
    diffs = agreement_diffs(runner, prompts, hooks)
    mismatch = torch.tensor([p.attractor_mismatch for p in prompts])
    return {
        "mean_logit_diff": diffs.mean().item(),
        "frac_positive": (diffs > 0).float().mean().item(),
        "frac_positive_attractor_mismatch": (diffs[mismatch] > 0).float().mean().item(),
        "frac_positive_no_mismatch": (diffs[~mismatch] > 0).float().mean().item(),
        "n_attractor_mismatch": int(mismatch.sum()),
    }


def fact_eval(runner: Runner, hooks: Sequence[Hook] = ()) -> dict[str, float]:
    """Fact-recall accuracy on the test facts."""
    prompts = corpus.fact_prompts("test")
    logits = last_logits(runner, [p.text for p in prompts], hooks)
    answers = _ids(runner, [p.answer for p in prompts])
    rows = torch.arange(len(prompts))
    logprob = torch.log_softmax(logits, -1)[rows, answers]
    return {
        "top1": (logits.argmax(-1) == answers).float().mean().item(),
        "mean_answer_logprob": logprob.mean().item(),
        "n_prompts": len(prompts),
    }


def induction_eval(
    runner: Runner, hooks: Sequence[Hook] = (), n: int = N_INDUCTION
) -> dict[str, float]:
    """Top-1 on the repeated half: for a span w1..wk followed by w1..wk, the predictions of
    the 2nd to k-th repeated words (the 1st repeated word cannot be known in advance)."""
    spans = corpus.induction_spans("test", n, seed=1)
    seqs = [encode_with_bos(runner.tokenizer, corpus.induction_text(s)) for s in spans]
    correct: float = 0
    total = 0
    first_half_correct: float = 0
    first_half_total = 0
    for span, seq, logits in zip(spans, seqs, _full_logits(runner, seqs, hooks), strict=True):
        k = len(span)
        if len(seq) != 2 * k + 1:
            raise ValueError(f"induction words must be single tokens: {span}")
        target = torch.tensor(seq)
        pred = logits.argmax(-1)
        # position p predicts token p+1; repeated words 2..k sit at positions k+2..2k.
        correct += (pred[k + 1 : 2 * k] == target[k + 2 : 2 * k + 1]).sum().item()
        total += k - 1
        first_half_correct += (pred[1:k] == target[2 : k + 1]).sum().item()
        first_half_total += k - 1
    return {
        "top1_repeated": correct / total,
        "top1_first_half": first_half_correct / first_half_total,
    }


def bias_eval(runner: Runner, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
    """Measured P(she) / (P(she) + P(he)) per occupation (mean over BIAS_FRAMES) and
    P(occupation | "She/He works as a") renormalised over the occupations, vs the planted values."""
    prompts = corpus.bias_prompts()
    probs = torch.softmax(last_logits(runner, [p for p, _ in prompts], hooks), -1)
    she, he = (single_token_id(runner.tokenizer, w) for w in ("she", "he"))
    share = probs[:, she] / (probs[:, she] + probs[:, he])
    measured: dict[str, list[float]] = {}
    for (_, occ), s in zip(prompts, share.tolist(), strict=True):
        measured.setdefault(occ, []).append(s)
    she_ratio = {occ: sum(v) / len(v) for occ, v in measured.items()}
    occs = list(corpus.OCCUPATION_SHE_RATIO)
    occ_ids = _ids(runner, occs)
    given: dict[str, dict[str, float]] = {}
    for pron in ("she", "he"):
        p = torch.softmax(last_logits(runner, [f"{pron.capitalize()} works as a"], hooks)[0], -1)[
            occ_ids
        ]
        given[pron] = dict(zip(occs, (p / p.sum()).tolist(), strict=True))
    err_she = max(abs(she_ratio[o] - corpus.OCCUPATION_SHE_RATIO[o]) for o in occs)
    err_given = max(
        abs(given[pr][o] - corpus.planted_occupation_given_pronoun(pr)[o])
        for pr in ("she", "he")
        for o in occs
    )
    return {
        "she_ratio": she_ratio,
        "max_abs_error_she_ratio": err_she,
        "occupation_given_pronoun": given,
        "max_abs_error_occupation_given_pronoun": err_given,
    }


def evaluate_all(runner: Runner) -> dict[str, Any]:
    """Every task on its held-out prompts."""
    return {
        "ioi": ioi_eval(runner),
        "agreement": agreement_eval(runner),
        "facts": fact_eval(runner),
        "induction": induction_eval(runner),
        "bias": bias_eval(runner),
    }


# ---------------------------------------------------------------------------------------------
# Mean ablation and ground-truth heads
# ---------------------------------------------------------------------------------------------


def reference_texts(task: str, n: int = N_REFERENCE) -> list[str]:
    """Training-split prompts of `task` whose mean head outputs stand in for ablated heads."""
    if task == "ioi":
        return [p.text for p in corpus.ioi_prompts("train", n, seed=2)]
    if task == "agreement":
        return [p.text for p in corpus.agreement_prompts("train", n, seed=2)]
    if task == "facts":
        return [p.text for p in corpus.fact_prompts("train")[:n]]
    if task == "induction":
        return [corpus.induction_text(s) for s in corpus.induction_spans("train", n, seed=2)]
    raise ValueError(f"unknown task {task!r}; valid: {list(TASK_METRICS)}")


def head_means(runner: Runner, texts: Sequence[str]) -> torch.Tensor:
    """Mean of each head's `z` over `texts` and their positions after BOS: [n_layers, n_heads, d_head]."""
    seqs = [encode_with_bos(runner.tokenizer, t) for t in texts]
    tokens, lengths = _pad(seqs, runner.tokenizer.bos_token_id)
    hooks, means = ablation.z_mean_recorder(runner.n_layers,
                                            ablation.positions_after_bos(tokens, lengths))
    runner.logits(tokens, hooks)
    return means()


def mean_ablation_hooks(means: torch.Tensor, heads: Sequence[Head]) -> list[Hook]:
    """Hooks that set `z` of each (layer, head) in `heads` to its mean at every position but BOS."""
    return ablation.ablation_hooks(heads, "mean", means=means)


# name -> (metric function (runner, hooks) -> float where 0 means "behaviour gone", description)
# Smaller prompt sets than `evaluate_all` keep the head search quick.
TASK_METRICS: dict[str, tuple[Callable[[Runner, Sequence[Hook]], float], str]] = {
    "ioi": (
        lambda r, h: ioi_eval(r, h, n=200)["mean_logit_diff"],
        "mean logit(IO) - logit(S) on 200 held-out IOI prompts",
    ),
    "agreement": (
        lambda r, h: agreement_eval(r, h, n=300)["mean_logit_diff"],
        "mean logit(correct verb) - logit(wrong verb) on 300 held-out agreement prompts",
    ),
    "facts": (
        lambda r, h: fact_eval(r, h)["top1"],
        "fact recall top-1 accuracy on the held-out fact prompts",
    ),
    "induction": (
        lambda r, h: induction_eval(r, h, n=100)["top1_repeated"],
        "induction top-1 on the repeated half, 100 spans",
    ),
}


def task_metric(
    runner: Runner, task: str, heads: Sequence[Head] = (), means: torch.Tensor | None = None
) -> float:
    """`task`'s metric with `heads` mean-ablated (means from `reference_texts(task)` if not given)."""
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASK_METRICS)}")
    hooks: list[Hook] = []
    if heads:
        if means is None:
            means = head_means(runner, reference_texts(task))
        hooks = mean_ablation_hooks(means, heads)
    return TASK_METRICS[task][0](runner, hooks)


def find_ground_truth_heads(
    runner: Runner, task: str, fraction: float = 0.25, max_heads: int = 8, n_controls: int = 10
) -> dict[str, Any]:
    """Greedy forward selection: add the head whose extra ablation lowers the metric most until
    the metric is at most `fraction` of its clean value (or `max_heads` are chosen). Also
    reports each head's single ablation and `n_controls` seeded random sets of as many other
    heads."""
    means = head_means(runner, reference_texts(task))
    all_heads = [
        (layer, head) for layer in range(runner.n_layers) for head in range(runner.n_heads)
    ]
    clean = task_metric(runner, task)
    single = {
        f"{layer}.{head}": task_metric(runner, task, [(layer, head)], means)
        for layer, head in all_heads
    }
    chosen: list[Head] = []
    value = clean
    while value > fraction * clean and len(chosen) < min(max_heads, len(all_heads)):
        scores = {
            hd: task_metric(runner, task, chosen + [hd], means)
            for hd in all_heads
            if hd not in chosen
        }
        best = min(scores, key=lambda hd: scores[hd])
        chosen.append(best)
        value = scores[best]
    others = [hd for hd in all_heads if hd not in chosen]
    controls = []
    for seed in range(n_controls):
        pick = random_other_heads(others, len(chosen), seed)
        controls.append(task_metric(runner, task, pick, means))
    return {
        "metric": TASK_METRICS[task][1],
        "clean": clean,
        "heads": [list(hd) for hd in sorted(chosen)],
        "greedy_order": [list(hd) for hd in chosen],
        "target_fraction": fraction,
        "ablated": value,
        "ablated_fraction_of_clean": value / clean,
        "single_head_ablation": single,
        "random_other_heads_ablated": {
            "n_sets": n_controls,
            "min": min(controls) if controls else None,
            "mean": sum(controls) / len(controls) if controls else None,
            "min_fraction_of_clean": min(controls) / clean if controls else None,
        },
    }


def random_other_heads(others: Sequence[Head], k: int, seed: int) -> list[Head]:
    """`k` heads drawn from `others` with a seeded RNG (the control used by the tests)."""
    return random.Random(seed).sample(list(others), min(k, len(others)))


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """A human-readable summary of the evaluation metrics, a line per task."""
    ioi, agr, fact, ind, bias = (
        metrics[k] for k in ("ioi", "agreement", "facts", "induction", "bias")
    )
    lines = [
        f"IOI logit diff > 0: ABBA {ioi['frac_positive_ABBA']:.3f}, BABA {ioi['frac_positive_BABA']:.3f}; "
        f"mean diff {ioi['mean_logit_diff']:.2f}; top-1 = IO {ioi['top1_is_io']:.3f}",
        f"agreement diff > 0: {agr['frac_positive']:.3f} (attractor of opposite number "
        f"{agr['frac_positive_attractor_mismatch']:.3f}, n={agr['n_attractor_mismatch']}); mean diff {agr['mean_logit_diff']:.2f}",
        f"fact recall top-1: {fact['top1']:.3f} ({fact['n_prompts']} held-out prompts)",
        f"induction top-1 on repeated half: {ind['top1_repeated']:.3f} (first half {ind['top1_first_half']:.3f})",
        f"planted she-ratio max abs error: {bias['max_abs_error_she_ratio']:.3f}; "
        f"P(occupation|pronoun) max abs error: {bias['max_abs_error_occupation_given_pronoun']:.3f}",
    ]
    lines += [
        f"  {occ:<10} planted {corpus.OCCUPATION_SHE_RATIO[occ]:.2f} measured {v:.3f}"
        for occ, v in bias["she_ratio"].items()
    ]
    return lines


def ground_truth_lines(result: dict[str, Any]) -> list[str]:
    """One printable line per task of a `ground_truth` result."""
    lines = []
    for task, res in result["tasks"].items():
        ctrl = res["random_other_heads_ablated"]
        lines.append(
            f"ground truth {task}: heads {res['heads']} -> {res['ablated']:.3f} of clean {res['clean']:.3f} "
            f"({res['ablated_fraction_of_clean']:.2f}); {ctrl['n_sets']} random sets of as many other heads: "
            f"min {ctrl['min_fraction_of_clean']:.2f}, mean {ctrl['mean'] / res['clean']:.2f} of clean"
        )
    return lines


GROUND_TRUTH_METHOD = (
    "mean ablation of blocks.{l}.attn.hook_z at every position after BOS, means over "
    f"{N_REFERENCE} training-split prompts of the same task (reference_texts); greedy forward "
    "selection of heads until the task metric is at most a quarter of its clean value (at most 8 heads)"
)


def ground_truth(runner: Runner) -> dict[str, Any]:
    """`find_ground_truth_heads` for every task, in the layout of ground_truth.json."""
    return {
        "method": GROUND_TRUTH_METHOD,
        "tasks": {task: find_ground_truth_heads(runner, task) for task in TASK_METRICS},
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.demo_model.evaluate [--model DIR] [--ground-truth]`: print held-out
    accuracies of a saved demo model; with --ground-truth also search the heads and write
    DIR/ground_truth.json."""
    from interp.demo_model.train import DEFAULT_OUT

    parser = argparse.ArgumentParser(description="Measure the demo model on held-out prompts.")
    parser.add_argument("--model", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--ground-truth",
        action="store_true",
        help="search ground-truth heads and write ground_truth.json",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    from transformer_lens.model_bridge import TransformerBridge

    runner = as_runner(TransformerBridge.boot_transformers(str(args.model), device="cpu"))
    for line in summary_lines(evaluate_all(runner)):
        print(line)
    if args.ground_truth:
        result = ground_truth(runner)
        for line in ground_truth_lines(result):
            print(line)
        (args.model / "ground_truth.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
