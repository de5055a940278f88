"""Task accuracies and ground-truth heads of the demo model, measured on held-out prompts.

Each `*_eval` function runs one task of `interp.demo_model.corpus` on a held-out split and
returns plain numbers: IOI logit difference (indirect object minus subject) by name order,
agreement logit difference (correct minus wrong verb), fact-recall and induction top-1, and
the planted he/she ratios as measured. Mean ablation replaces chosen heads' outputs `z` (the
per-head attention output before W_O) by their mean over a reference set of same-task training
prompts; `find_ground_truth_heads` greedily collects the heads whose joint ablation breaks a
task and checks every disjoint head set of the same size as a control. `induction_circuit`
names the two steps of induction separately (previous-token heads, induction heads) and
path-patches from the first to the second's keys. Hooks work on a TransformerLens bridge
(`blocks.{l}.attn.hook_z`), on the project's `LoadedModel`, or on a raw Hugging Face GPT-2
(the same hooks emulated on `c_proj`); attention patterns and path patching use the HF model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import torch

from interp.demo_model import corpus, packing
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
# Ground-truth heads: their joint ablation leaves at most GROUND_TRUTH_FRACTION of the clean
# metric, while every disjoint head set of the same size leaves at least CONTROL_FLOOR.
GROUND_TRUTH_FRACTION = 0.2
CONTROL_FLOOR = 0.4


@dataclass
class Runner:
    """Uniform access to logits, with optional TransformerLens-named forward hooks."""

    forward: Callable[[torch.Tensor, Sequence[Hook]], torch.Tensor]
    tokenizer: Any
    n_layers: int
    n_heads: int
    device: torch.device

    def logits(self, tokens: torch.Tensor, fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
        """Logits [batch, pos, vocab] on the CPU of CPU-built `tokens`, run where the weights are
        (the evaluations index and mask them with tensors built on the CPU)."""
        with torch.no_grad():
            return self.forward(tokens.to(self.device), fwd_hooks).cpu()


def as_runner(model: Any, tokenizer: Any = None) -> Runner:
    """Wrap a `LoadedModel` (has `.bridge`), a `TransformerBridge`, or a HF GPT-2 + tokenizer."""
    if hasattr(model, "bridge") and hasattr(model, "hooked"):
        lm = model

        def forward_lm(tokens: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
            with lm.hooked(fwd_hooks=list(hooks)) as bridge:
                return bridge(tokens)

        return Runner(forward_lm, lm.tokenizer, lm.info.n_layers, lm.info.n_heads, lm.device)
    if hasattr(model, "run_with_hooks"):
        bridge = model

        def forward_bridge(tokens: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
            if hooks:
                return bridge.run_with_hooks(tokens, fwd_hooks=list(hooks))
            return bridge(tokens)

        return Runner(forward_bridge, bridge.tokenizer, bridge.cfg.n_layers, bridge.cfg.n_heads,
                      next(bridge.parameters()).device)
    if hasattr(model, "transformer") and tokenizer is not None:
        return Runner(_hf_forward(model), tokenizer, model.config.n_layer, model.config.n_head,
                      next(model.parameters()).device)
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


def ioi_eval(
    runner: Runner,
    hooks: Sequence[Hook] = (),
    n: int = N_IOI,
    templates: corpus.Split | None = None,
) -> dict[str, float]:
    """IOI on held-out name pairs; `templates="test"` uses the held-out compositions
    (see `corpus.ioi_prompts`)."""
    prompts = corpus.ioi_prompts("test", n, seed=1, templates=templates)
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
    runner: Runner,
    hooks: Sequence[Hook] = (),
    n: int = N_AGREEMENT,
    openers: corpus.AgreementOpeners = "seen",
    n_attractors: int | None = None,
) -> dict[str, float]:
    """Agreement on held-out prompts (see `corpus.agreement_prompts` for the options)."""
    prompts = corpus.agreement_prompts("test", n, seed=1, openers=openers, n_attractors=n_attractors)
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
    """Fact recall on the held-out fact prompts: top-1 accuracy of the answer token."""
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


def repeat_accuracy(
    runner: Runner, sequences: Sequence[Sequence[int]], hooks: Sequence[Hook] = ()
) -> dict[str, float]:
    """Top-1 on `[BOS] r r` for each id sequence r: on the repeated half (predictions of the
    2nd to k-th repeated tokens; the 1st cannot be known in advance) and, as a chance check, on
    the first half."""
    bos = runner.tokenizer.bos_token_id
    seqs = [[bos, *r, *r] for r in sequences]
    correct = total = first_half_correct = first_half_total = 0
    for r, seq, logits in zip(sequences, seqs, _full_logits(runner, seqs, hooks), strict=True):
        k = len(r)
        target = torch.tensor(seq)
        pred = logits.argmax(-1)
        # position p predicts token p+1; repeated tokens 2..k sit at positions k+2..2k.
        correct += int((pred[k + 1 : 2 * k] == target[k + 2 : 2 * k + 1]).sum())
        total += k - 1
        first_half_correct += int((pred[1:k] == target[2 : k + 1]).sum())
        first_half_total += k - 1
    return {
        "top1_repeated": correct / total,
        "top1_first_half": first_half_correct / first_half_total,
    }


def word_ids(runner: Runner, words: Sequence[str]) -> list[int]:
    """Leading-space single-token ids of `words` (ValueError if one is not a single token)."""
    return [single_token_id(runner.tokenizer, w) for w in words]


def induction_eval(
    runner: Runner,
    hooks: Sequence[Hook] = (),
    n: int = N_INDUCTION,
    min_len: int = corpus.INDUCTION_MIN_LEN,
    max_len: int = corpus.INDUCTION_MAX_LEN,
) -> dict[str, float]:
    """`repeat_accuracy` on held-out spans of corpus words (leading-space tokens)."""
    spans = corpus.induction_spans("test", n, seed=1, min_len=min_len, max_len=max_len)
    return repeat_accuracy(runner, [word_ids(runner, s) for s in spans], hooks)


def random_induction_eval(
    runner: Runner,
    hooks: Sequence[Hook] = (),
    n: int = N_INDUCTION,
    min_len: int = 10,
    max_len: int = 40,
    seed: int = 1,
) -> dict[str, float]:
    """`repeat_accuracy` on held-out random token sequences over the whole vocabulary."""
    vocab = len(runner.tokenizer)
    return repeat_accuracy(
        runner, corpus.random_induction_sequences(vocab, n, min_len, max_len, seed), hooks
    )


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


RANDOM_LENGTH_BINS: tuple[tuple[int, int], ...] = ((4, 9), (10, 20), (21, 30), (31, 40), (41, 60))
WORD_LENGTH_BINS: tuple[tuple[int, int], ...] = ((4, 12), (13, 20), (21, 40))


def induction_breakdown(runner: Runner, n: int = 100) -> dict[str, Any]:
    """Second-half top-1 by span length (random tokens, corpus words) and by token type
    (spans of 4-12 names, places, agreement nouns; leading-space tokens)."""
    by_length = {
        f"random {lo}-{hi}": random_induction_eval(runner, n=n, min_len=lo, max_len=hi, seed=2)["top1_repeated"]
        for lo, hi in RANDOM_LENGTH_BINS
    }
    by_length.update({
        f"words {lo}-{hi}": induction_eval(runner, n=n, min_len=lo, max_len=hi)["top1_repeated"]
        for lo, hi in WORD_LENGTH_BINS
    })
    by_type = {}
    for group, words in corpus.induction_word_groups().items():
        rng = random.Random(f"induction-type|{group}")
        spans = [rng.sample(words, rng.randint(4, min(12, len(words)))) for _ in range(n)]
        by_type[group] = repeat_accuracy(runner, [word_ids(runner, s) for s in spans])["top1_repeated"]
    return {"by_length": by_length, "by_type": by_type}


def text_windows(tokenizer: Any, n_windows: int, seed: int, context: int = packing.CONTEXT) -> torch.Tensor:
    """[n_windows, context] ids: BOS, then the next context - 1 tokens of one stream of text
    examples (`corpus.generate_corpus`, another seed than training) joined by BOS. Cutting a
    stream spreads example starts evenly over positions (windows that each begin with a whole
    example put the same parts of the first examples at the same positions, a bump in loss by
    position that comes from the data, not the model), and there are no random sequences, so
    loss by position compares like with like."""
    texts = corpus.generate_corpus(n_windows * context // 10, seed=seed)
    bos = tokenizer.bos_token_id
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += [bos, *ids]
        if len(stream) >= n_windows * (context - 1):
            break
    step = context - 1
    return torch.tensor([[bos, *stream[i * step : (i + 1) * step]] for i in range(n_windows)])


def position_loss(runner: Runner, n_windows: int = 96, seed: int = 7, bin_size: int = 16) -> dict[str, Any]:
    """Mean next-token loss at each position of full-context text windows (`text_windows`),
    and its means over bins of `bin_size` positions."""
    tokens = text_windows(runner.tokenizer, n_windows, seed)
    losses = []
    for start in range(0, len(tokens), 32):
        chunk = tokens[start : start + 32]
        logits = runner.logits(chunk).float()
        losses.append(torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none"))
    per_position = torch.cat(losses).mean(0)
    bins = {
        f"{lo + 1}-{min(lo + bin_size, len(per_position))}": per_position[lo : lo + bin_size].mean().item()
        for lo in range(0, len(per_position), bin_size)
    }
    values = list(bins.values())
    return {
        "per_position": [round(v, 4) for v in per_position.tolist()],
        "bins": bins,
        "largest_increase_between_bins": max(b - a for a, b in zip(values, values[1:], strict=False)),
        "first_half_mean": per_position[: len(per_position) // 2].mean().item(),
        "second_half_mean": per_position[len(per_position) // 2 :].mean().item(),
    }


def evaluate_all(runner: Runner) -> dict[str, Any]:
    """Every task on its held-out prompts, induction by length and type, loss by position."""
    return {
        "ioi": ioi_eval(runner),
        "ioi_held_out_compositions": ioi_eval(runner, templates="test"),
        "agreement": agreement_eval(runner),
        "agreement_unseen_openers": agreement_eval(runner, n=400, openers="unseen"),
        "agreement_two_attractors": agreement_eval(runner, n=400, n_attractors=2),
        "facts": fact_eval(runner),
        "induction": induction_eval(runner),
        "random_induction": random_induction_eval(runner),
        "induction_breakdown": induction_breakdown(runner),
        "position_loss": position_loss(runner),
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
    raise ValueError(f"unknown task {task!r}; valid: {list(TASK_METRICS)}")


def head_means(runner: Runner, texts: Sequence[str]) -> torch.Tensor:
    """Mean of each head's `z` over `texts` and their positions after BOS: [n_layers, n_heads, d_head]."""
    return head_means_of_sequences(
        runner, [runner.tokenizer.encode(t, add_special_tokens=False) for t in texts]
    )


def head_means_of_sequences(runner: Runner, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """`head_means` over token id sequences (BOS is prepended to each)."""
    seqs = [[runner.tokenizer.bos_token_id, *s] for s in sequences]
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
        lambda r, h: ioi_eval(r, h, n=120)["mean_logit_diff"],
        "mean logit(IO) - logit(S) on 120 held-out IOI prompts",
    ),
    "agreement": (
        lambda r, h: agreement_eval(r, h, n=200)["mean_logit_diff"],
        "mean logit(correct verb) - logit(wrong verb) on 200 held-out agreement prompts",
    ),
    "facts": (
        lambda r, h: fact_eval(r, h)["top1"],
        "fact recall top-1 accuracy on the held-out fact prompts",
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


def disjoint_sets(all_heads: Sequence[Head], chosen: Sequence[Head], k: int) -> list[list[Head]]:
    """Every set of `k` heads that shares no head with `chosen`."""
    others = [hd for hd in all_heads if hd not in chosen]
    return [list(c) for c in combinations(others, k)]


def find_ground_truth_heads(
    runner: Runner,
    task: str,
    fraction: float = GROUND_TRUTH_FRACTION,
    control_floor: float = CONTROL_FLOOR,
    max_heads: int = 6,
) -> dict[str, Any]:
    """Greedy forward selection with exhaustive controls.

    Adds the head whose extra ablation lowers the metric most until the metric is at most
    `fraction` of its clean value; then, while some disjoint set of as many heads also brings
    the metric below `control_floor` of clean (a redundant route the set misses), keeps adding
    greedy heads (at most `max_heads`). Controls are every disjoint head set of the same size.
    """
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
    controls: list[tuple[list[Head], float]] = []
    while len(chosen) < max_heads:
        scores = {
            hd: task_metric(runner, task, chosen + [hd], means)
            for hd in all_heads
            if hd not in chosen
        }
        best = min(scores, key=lambda hd: scores[hd])
        chosen.append(best)
        value = scores[best]
        if value > fraction * clean:
            continue
        controls = [
            (pick, task_metric(runner, task, pick, means))
            for pick in disjoint_sets(all_heads, chosen, len(chosen))
        ]
        if not controls or min(v for _, v in controls) >= control_floor * clean:
            break
    worst = min(controls, key=lambda c: c[1]) if controls else None
    return {
        "metric": TASK_METRICS[task][1],
        "clean": clean,
        "heads": [list(hd) for hd in sorted(chosen)],
        "greedy_order": [list(hd) for hd in chosen],
        "target_fraction": fraction,
        "control_floor": control_floor,
        "ablated": value,
        "ablated_fraction_of_clean": value / clean,
        "single_head_ablation": single,
        "disjoint_sets_ablated": {
            "n_sets": len(controls),
            "min": worst[1] if worst else None,
            "argmin": [list(hd) for hd in worst[0]] if worst else None,
            "mean": sum(v for _, v in controls) / len(controls) if controls else None,
            "min_fraction_of_clean": worst[1] / clean if worst else None,
        },
    }


def random_other_heads(others: Sequence[Head], k: int, seed: int) -> list[Head]:
    """`k` heads drawn from `others` with a seeded RNG (a cheap control for quick checks)."""
    return random.Random(seed).sample(list(others), min(k, len(others)))


# ---------------------------------------------------------------------------------------------
# The induction circuit: previous-token heads, induction heads, and the path between them
# ---------------------------------------------------------------------------------------------

# Repeated random sequences of this length probe the circuit (the attention page's induction
# score uses the same construction).
CIRCUIT_SEQ_LEN = 20
N_CIRCUIT = 60
# A previous-token head puts at least this much attention on the previous position, on average.
PREV_TOKEN_THRESHOLD = 0.4


def circuit_sequences(vocab_size: int, n: int = N_CIRCUIT, seed: int = 3) -> list[list[int]]:
    """Held-out random token sequences of CIRCUIT_SEQ_LEN ids (to be repeated once)."""
    return corpus.random_induction_sequences(vocab_size, n, CIRCUIT_SEQ_LEN, CIRCUIT_SEQ_LEN, seed)


def _repeated_tokens(bos: int, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    return torch.tensor([[bos, *r, *r] for r in sequences])


def attention_head_scores(hf_model: Any, tokens: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-head scores [n_layers, n_heads] on `[BOS] r r` batches with |r| = k.

    previous_token: mean attention from each position p >= 2 to p - 1.
    induction: mean attention from each repeated-half position p (k+1 <= p <= 2k) to p - k + 1,
    the token after the first occurrence of the current token.
    """
    with torch.no_grad():
        attentions = hf_model(tokens, output_attentions=True).attentions
    pattern = torch.stack(attentions, 1).float()  # [batch, layer, head, query, key]
    positions = torch.arange(tokens.shape[1])
    prev_q = positions[2:]
    ind_q = positions[k + 1 : 2 * k + 1]
    return {
        "previous_token": pattern[:, :, :, prev_q, prev_q - 1].mean((0, 3)),
        "induction": pattern[:, :, :, ind_q, ind_q - k + 1].mean((0, 3)),
    }


def _head_contributions(hf_model: Any, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each head's direct write to the residual stream, z_h @ W_O[h]: {layer: [b, pos, head, d]}."""
    n_heads = hf_model.config.n_head
    out: dict[int, torch.Tensor] = {}
    handles = []

    def capture(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple) -> None:
            z = args[0].reshape(*args[0].shape[:-1], n_heads, -1)
            w = module.weight.reshape(n_heads, z.shape[-1], -1)  # Conv1D weight is [in, out]
            out[layer] = torch.einsum("bphd,hdm->bphm", z, w)

        return hook

    try:
        for layer, block in enumerate(hf_model.transformer.h):
            handles.append(block.attn.c_proj.register_forward_pre_hook(capture(layer)))
        with torch.no_grad():
            hf_model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return out


def _repeat_top1(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> float:
    pred = logits.argmax(-1)[:, k + 1 : 2 * k]
    return (pred == tokens[:, k + 2 : 2 * k + 1]).float().mean().item()


def path_patch_keys(
    hf_model: Any,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    senders: Sequence[Head],
    receivers: Sequence[Head],
    k: int,
    contributions: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] | None = None,
) -> float:
    """Second-half top-1 of the clean run when only the receivers' keys see the senders'
    outputs from the corrupted run (the direct path sender -> receiver key; every other path,
    and the receivers' queries and values, stay clean)."""
    clean_c, corrupt_c = contributions or (
        _head_contributions(hf_model, clean),
        _head_contributions(hf_model, corrupted),
    )
    n_heads, d_model = hf_model.config.n_head, hf_model.config.n_embd
    d_head = d_model // n_heads
    handles = []
    block_inputs: dict[int, torch.Tensor] = {}
    for layer in sorted({r_layer for r_layer, _ in receivers}):
        delta = sum(
            (corrupt_c[s_layer][:, :, s_head] - clean_c[s_layer][:, :, s_head])
            for s_layer, s_head in senders
            if s_layer < layer
        )
        if not isinstance(delta, torch.Tensor):
            continue  # no sender sits below this layer: no path to patch
        block = hf_model.transformer.h[layer]
        heads = [h for r_layer, h in receivers if r_layer == layer]

        def keep_input(module: Any, args: tuple, kwargs: dict, layer: int = layer) -> None:
            block_inputs[layer] = args[0] if args else kwargs["hidden_states"]

        def patch_keys(
            module: Any, args: tuple, output: torch.Tensor, layer: int = layer,
            delta: torch.Tensor = delta, block: Any = block, heads: list[int] = heads,
        ) -> torch.Tensor:
            # c_attn is a Conv1D (x @ W + b); called directly it would re-enter this hook.
            patched = block.ln_1(block_inputs[layer] + delta) @ module.weight + module.bias
            output = output.clone()
            for h in heads:
                cols = slice(d_model + h * d_head, d_model + (h + 1) * d_head)
                output[..., cols] = patched[..., cols]
            return output

        handles.append(block.register_forward_pre_hook(keep_input, with_kwargs=True))
        handles.append(block.attn.c_attn.register_forward_hook(patch_keys))
    try:
        with torch.no_grad():
            logits = hf_model(clean).logits
    finally:
        for handle in handles:
            handle.remove()
    return _repeat_top1(logits, clean, k)


def circuit_reference_means(runner: Runner) -> torch.Tensor:
    """Mean head outputs over 100 repeated random sequences (another seed than the evaluation's),
    which stand in for the heads that the circuit analysis ablates."""
    vocab = len(runner.tokenizer)
    reference = corpus.random_induction_sequences(vocab, N_REFERENCE // 3, 10, 40, seed=5)
    return head_means_of_sequences(runner, [[*r, *r] for r in reference])


def circuit_inputs(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean `[BOS] r r` and corrupted `[BOS] r' r` batches (r' other random tokens) of the
    circuit analysis."""
    vocab, bos, k = len(tokenizer), tokenizer.bos_token_id, CIRCUIT_SEQ_LEN
    clean = _repeated_tokens(bos, circuit_sequences(vocab))
    other = torch.tensor(circuit_sequences(vocab, seed=4))
    return clean, torch.cat([clean[:, :1], other, clean[:, k + 1 :]], 1)


def induction_circuit(hf_model: Any, runner: Runner) -> dict[str, Any]:
    """The two steps of induction on held-out repeated random tokens, named separately.

    Induction heads: the fewest heads of highest induction score whose joint mean ablation
    leaves at most GROUND_TRUTH_FRACTION of the clean second-half top-1 (on 200 sequences of
    length 10-40). Previous-token heads: heads in layers below every induction head with a
    previous-token score of at least PREV_TOKEN_THRESHOLD. Evidence for the path: patching the
    previous-token heads' outputs from a run whose first half is other random tokens into the
    induction heads' keys only, compared with every disjoint sender set of the same size.
    """
    k = CIRCUIT_SEQ_LEN
    clean, corrupted = circuit_inputs(runner.tokenizer)
    scores = attention_head_scores(hf_model, clean, k)
    n_layers, n_heads = scores["induction"].shape
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    by_induction = sorted(all_heads, key=lambda hd: -scores["induction"][hd].item())

    means = circuit_reference_means(runner)
    clean_top1 = random_induction_eval(runner)["top1_repeated"]
    induction_heads: list[Head] = []
    ablated = clean_top1
    for head in by_induction:
        induction_heads.append(head)
        ablated = random_induction_eval(runner, mean_ablation_hooks(means, induction_heads))[
            "top1_repeated"
        ]
        if ablated <= GROUND_TRUTH_FRACTION * clean_top1:
            break
    first_layer = min(layer for layer, _ in induction_heads)
    earlier = [hd for hd in all_heads if hd[0] < first_layer]
    previous_token_heads = [
        hd for hd in earlier if scores["previous_token"][hd].item() >= PREV_TOKEN_THRESHOLD
    ]
    prev_ablated = random_induction_eval(runner, mean_ablation_hooks(means, previous_token_heads))[
        "top1_repeated"
    ] if previous_token_heads else None

    contributions = (_head_contributions(hf_model, clean), _head_contributions(hf_model, corrupted))
    with torch.no_grad():
        path_clean = _repeat_top1(hf_model(clean).logits, clean, k)
        path_corrupted = _repeat_top1(hf_model(corrupted).logits, clean, k)
    gap = path_clean - path_corrupted

    def share(senders: Sequence[Head]) -> float:
        patched = path_patch_keys(hf_model, clean, corrupted, senders, induction_heads, k, contributions)
        return (path_clean - patched) / gap if gap else 0.0

    receivers = set(induction_heads)
    candidates = [hd for hd in all_heads if hd not in receivers and hd[0] < max(layer for layer, _ in induction_heads)]
    path_share = share(previous_token_heads) if previous_token_heads else None
    controls = [
        (list(c), share(list(c)))
        for c in combinations([hd for hd in candidates if hd not in previous_token_heads], len(previous_token_heads))
    ] if previous_token_heads else []
    worst = max(controls, key=lambda c: c[1]) if controls else None
    return {
        "data": f"{N_CIRCUIT} held-out random token sequences of {k} ids, repeated once after BOS",
        "previous_token_scores": {f"{a}.{b}": scores["previous_token"][a, b].item() for a, b in all_heads},
        "induction_scores": {f"{a}.{b}": scores["induction"][a, b].item() for a, b in all_heads},
        "induction_heads": [list(hd) for hd in sorted(induction_heads)],
        "previous_token_heads": [list(hd) for hd in sorted(previous_token_heads)],
        "ablation": {
            "metric": "second-half top-1 on 200 held-out random token sequences of length 10-40",
            "clean": clean_top1,
            "induction_heads_ablated": ablated,
            "induction_heads_ablated_fraction_of_clean": ablated / clean_top1,
            "previous_token_heads_ablated": prev_ablated,
        },
        "path_patching": {
            "method": "clean run; only the induction heads' keys see the senders' direct outputs "
            "from a corrupted run whose first half is other random tokens; share = (clean - patched) / (clean - corrupted) of second-half top-1",
            "clean": path_clean,
            "corrupted": path_corrupted,
            "previous_token_heads_share": path_share,
            "n_disjoint_sets": len(controls),
            "best_disjoint_set": [list(hd) for hd in worst[0]] if worst else None,
            "best_disjoint_share": worst[1] if worst else None,
            "disjoint_shares": {"+".join(f"{a}.{b}" for a, b in c): v for c, v in controls},
        },
    }


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """Printable lines of `evaluate_all`'s measures (the card's held-out section)."""
    ioi, comp, agr, unseen, stacked, fact, ind, rnd, bias = (
        metrics[k]
        for k in (
            "ioi", "ioi_held_out_compositions", "agreement", "agreement_unseen_openers",
            "agreement_two_attractors", "facts", "induction", "random_induction", "bias",
        )
    )
    lines = [
        f"IOI logit diff > 0: ABBA {ioi['frac_positive_ABBA']:.3f}, BABA {ioi['frac_positive_BABA']:.3f}; "
        f"mean diff {ioi['mean_logit_diff']:.2f}; top-1 = IO {ioi['top1_is_io']:.3f}",
        f"IOI held-out compositions: ABBA {comp['frac_positive_ABBA']:.3f}, BABA {comp['frac_positive_BABA']:.3f}; "
        f"top-1 = IO {comp['top1_is_io']:.3f}",
        f"agreement diff > 0: {agr['frac_positive']:.3f} (attractor of opposite number "
        f"{agr['frac_positive_attractor_mismatch']:.3f}, n={agr['n_attractor_mismatch']}); mean diff {agr['mean_logit_diff']:.2f}",
        f"agreement unseen openers: {unseen['frac_positive']:.3f}; two stacked attractors: {stacked['frac_positive']:.3f} "
        f"(some opposite number {stacked['frac_positive_attractor_mismatch']:.3f})",
        f"fact recall top-1: {fact['top1']:.3f} ({fact['n_prompts']} held-out prompts)",
        f"induction top-1 on repeated half: words {ind['top1_repeated']:.3f} (first half {ind['top1_first_half']:.3f}); "
        f"random tokens 10-40 {rnd['top1_repeated']:.3f} (first half {rnd['top1_first_half']:.3f})",
        "induction by length/type: " + ", ".join(
            f"{k} {v:.2f}" for part in metrics["induction_breakdown"].values() for k, v in part.items()),
        "loss by position (bins of 16): " + " ".join(f"{v:.2f}" for v in metrics["position_loss"]["bins"].values()),
        f"planted she-ratio max abs error: {bias['max_abs_error_she_ratio']:.3f}; "
        f"P(occupation|pronoun) max abs error: {bias['max_abs_error_occupation_given_pronoun']:.3f}",
    ]
    lines += [
        f"  {occ:<10} planted {corpus.OCCUPATION_SHE_RATIO[occ]:.2f} measured {v:.3f}"
        for occ, v in bias["she_ratio"].items()
    ]
    return lines


def ground_truth_lines(result: dict[str, Any]) -> list[str]:
    """Printable lines of a `ground_truth` result: one per task, then the induction circuit."""
    lines = []
    for task, res in result["tasks"].items():
        ctrl = res["disjoint_sets_ablated"]
        lines.append(
            f"ground truth {task}: heads {res['heads']} -> {res['ablated']:.3f} of clean {res['clean']:.3f} "
            f"({res['ablated_fraction_of_clean']:.2f}); all {ctrl['n_sets']} disjoint sets of as many heads: "
            f"min {ctrl['min_fraction_of_clean']} ({ctrl['argmin']}), mean {ctrl['mean'] and ctrl['mean'] / res['clean']} of clean"
        )
    circuit = result["induction_circuit"]
    abl, path = circuit["ablation"], circuit["path_patching"]
    lines.append(
        f"induction circuit: previous-token heads {circuit['previous_token_heads']}, induction heads "
        f"{circuit['induction_heads']}; ablating induction heads {abl['induction_heads_ablated']:.3f} of clean "
        f"{abl['clean']:.3f} ({abl['induction_heads_ablated_fraction_of_clean']:.2f}); path share "
        f"{path['previous_token_heads_share']} vs best disjoint {path['best_disjoint_share']} {path['best_disjoint_set']}"
    )
    return lines


GROUND_TRUTH_METHOD = (
    "mean ablation of blocks.{l}.attn.hook_z at every position after BOS, means over "
    f"{N_REFERENCE} training-split prompts of the same task (reference_texts); greedy forward "
    f"selection of heads until the task metric is at most {GROUND_TRUTH_FRACTION} of its clean value "
    f"and every disjoint head set of the same size leaves at least {CONTROL_FLOOR} of it (at most 6 heads)"
)


def ground_truth(runner: Runner, hf_model: Any) -> dict[str, Any]:
    """`find_ground_truth_heads` for IOI, agreement and facts, and `induction_circuit`, in the
    layout of ground_truth.json. `hf_model` is the same model as a HF GPT2LMHeadModel (the
    circuit reads attention patterns and patches keys on it)."""
    return {
        "method": GROUND_TRUTH_METHOD,
        "tasks": {task: find_ground_truth_heads(runner, task) for task in TASK_METRICS},
        "induction_circuit": induction_circuit(hf_model, runner),
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
        from transformers import GPT2LMHeadModel

        hf_model = GPT2LMHeadModel.from_pretrained(args.model, attn_implementation="eager").eval()
        result = ground_truth(as_runner(hf_model, runner.tokenizer), hf_model)
        for line in ground_truth_lines(result):
            print(line)
        (args.model / "ground_truth.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
