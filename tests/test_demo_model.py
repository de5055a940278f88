"""Acceptance tests of the bundled demo model (issues 3 and 20), on held-out prompts.

They load the shipped folder through the project's loader and check the documented behaviours
and the documented ground-truth heads; nothing here retrains the model. Tests of what only the
second model (issue 20: context 128, trained by the packed corpus) does are skipped while the
shipped folder still holds the first one (context 64), so code and assets stay consistent.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from interp import load_model  # noqa: E402
from interp.demo_model import corpus, evaluate, packing  # noqa: E402
from interp.demo_model.tokenizer import check_single_tokens  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-gpt2"
SHIPPED_V2 = json.loads((MODEL_DIR / "config.json").read_text())["n_positions"] == packing.CONTEXT
needs_v2 = pytest.mark.skipif(
    not SHIPPED_V2,
    reason="the shipped demo model is the first one (context 64); retrain with "
    "`python -m interp.demo_model.train` to ship the issue-20 model",
)


@pytest.fixture(scope="module")
def lm():
    return load_model("demo")


@pytest.fixture(scope="module")
def runner(lm):
    return evaluate.as_runner(lm)


@pytest.fixture(scope="module")
def ground_truth():
    return json.loads((MODEL_DIR / "ground_truth.json").read_text())


def test_shipped_folder_is_small_standard_gpt2():
    files = {p.name for p in MODEL_DIR.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
        "ground_truth.json",
    } <= files
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir()) <= 20 * 2**20
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["architectures"] == ["GPT2LMHeadModel"]


def test_loader_reports_architecture(lm):
    context = packing.CONTEXT if SHIPPED_V2 else 64
    assert (lm.info.n_layers, lm.info.n_heads, lm.info.d_model, lm.info.n_ctx) == (4, 4, 128, context)
    assert lm.info.d_vocab == len(lm.tokenizer)


def test_task_words_are_single_tokens(lm):
    check_single_tokens(lm.tokenizer)
    assert lm.tokenizer.bos_token == "<|endoftext|>"


# A deterministic sample for the fast test; the slow test below regenerates the whole training
# corpus with the shipped run's settings (metrics.json: examples and seed).
FAST_CORPUS_SAMPLE = 100_000


def held_out_prompts() -> dict[str, set[str]]:
    """The prompts the evaluation and the head search read (their seeds and sizes, and more)."""
    agreement = set()
    for seed in (0, 1):
        agreement |= {p.text for p in corpus.agreement_prompts("test", 2000, seed=seed)}
    spans = corpus.induction_spans("test", evaluate.N_INDUCTION, seed=1)
    spans += corpus.induction_spans("test", 2000, seed=0)
    return {
        "agreement": agreement,
        "facts": {p.text for p in corpus.fact_prompts("test")},
        "induction": {corpus.induction_text(span) for span in spans},
        "induction_spans": {" ".join(span) for span in spans},
    }


def assert_no_held_out_prompt_in(texts: list[str]) -> None:
    """Reference: the corpus sentences themselves, read word by word. A held-out agreement or
    fact prompt must not be the start of any sentence up to a verb / " of" (the place the model
    is asked to predict); no sentence may hold both names of a held-out IOI pair; no sentence
    may be a held-out induction text, or start with a held-out span."""
    held_out = held_out_prompts()
    held_out_pairs = [frozenset(p) for p in corpus.ioi_name_pairs("test")]
    names = set(corpus.NAMES)
    verbs = {verb for pair in corpus.VERB_PAIRS for verb in pair}
    assert held_out["agreement"] and held_out["facts"] and held_out_pairs
    for text in texts:
        words = text.split()
        present = {w.strip(".,?!") for w in words} & names
        assert not any(pair <= present for pair in held_out_pairs), text
        for i, word in enumerate(words):
            if word in verbs:
                assert " ".join(words[:i]) not in held_out["agreement"], text
            if word == "of":
                assert " ".join(words[: i + 1]) not in held_out["facts"], text
        assert text not in held_out["induction"], text
        half = len(words) // 2
        if len(words) % 2 == 0 and words[:half] == words[half:]:
            assert " ".join(words[:half]) not in held_out["induction_spans"], text


def test_held_out_prompts_never_in_training_corpus():
    """A deterministic 100,000-sentence sample of the corpus (seed 0) holds no held-out prompt
    of any task, and every fact is still trained in some phrasing."""
    texts = corpus.generate_corpus(FAST_CORPUS_SAMPLE, seed=0)
    assert_no_held_out_prompt_in(texts)
    train_facts = {p.fact for p in corpus.fact_prompts("train")}
    assert train_facts == set(corpus.FACTS)


@pytest.mark.slow
def test_held_out_prompts_never_in_the_shipped_training_corpus():
    """Every corpus the shipped model was trained on (each training stage's examples and seed,
    from metrics.json) holds no held-out prompt."""
    record = json.loads((MODEL_DIR / "metrics.json").read_text())
    assert record["stages"]
    for stage in record["stages"]:
        assert_no_held_out_prompt_in(corpus.generate_corpus(stage["n_examples"],
                                                            seed=stage["seed"]))


def _template_regex(template: str) -> str:
    slots = {"A": r"\w+", "B": r"\w+", "S": r"\w+", "place": r"\w+", "obj": r"\w+"}
    pieces = re.split(r"(\{\w+\})", template)
    return "".join(slots[p[1:-1]] if p.startswith("{") else re.escape(p) for p in pieces)


def test_held_out_ioi_compositions_never_in_training_corpus():
    """Reference: regular expressions built from the held-out template strings, matched
    against the generated sentences (independent of the split bookkeeping)."""
    held_out = corpus.ioi_template_indices("test")
    assert len(held_out) >= 100
    pattern = re.compile(
        "|".join(f"(?:{_template_regex(corpus.IOI_COMPOSED_TEMPLATES[i])}) \\w+\\.$" for i in held_out)
    )
    texts = corpus.generate_corpus(20_000, seed=0)
    any_ioi = re.compile(
        "|".join(f"(?:{_template_regex(template)}) \\w+\\." for template in corpus.IOI_COMPOSED_TEMPLATES)
    )
    trained_ioi = [text for text in texts if any_ioi.fullmatch(text)]
    assert len(trained_ioi) > 5000
    assert not [t for t in trained_ioi if pattern.fullmatch(t)]
    train = [corpus.IOI_COMPOSITIONS[i] for i in corpus.ioi_template_indices("train")]
    for part, options in enumerate((corpus.IOI_OPENERS, corpus.IOI_FIRST_CLAUSES,
                                    corpus.IOI_CONNECTIVES, corpus.IOI_SECOND_CLAUSES)):
        assert {c[part] for c in train} == set(range(len(options)))  # every part is trained


def test_unseen_agreement_openers_never_open_an_agreement_sentence():
    """Reference: the generated sentences themselves; an agreement sentence is one whose
    opener is followed by "the" and an agreement noun."""
    nouns = {form for pair in corpus.AGREEMENT_NOUNS for form in pair}
    texts = corpus.generate_corpus(20_000, seed=0)
    for opener in corpus.AGREEMENT_UNSEEN_OPENERS:
        assert any(t.startswith(opener) for t in texts), opener  # the opener is in the corpus
        for text in texts:
            if text.startswith(opener + "the "):
                assert text[len(opener) + 4 :].split()[0] not in nouns, text
    assert not set(corpus.AGREEMENT_UNSEEN_OPENERS) & set(corpus.AGREEMENT_OPENERS)


def test_held_out_random_sequences_never_in_training_windows():
    """Reference: a scan of the packed training windows for every 8-token run of the
    evaluation's random sequences."""
    windows, labels, tokenizer = packing.corpus_windows(1500, seed=0)
    assert {len(w) for w in windows} == {packing.CONTEXT}
    assert all(w[0] == tokenizer.bos_token_id for w in windows)
    seen = {tuple(w[i : i + 8]) for w in windows for i in range(len(w) - 7)}
    held_out = corpus.random_induction_sequences(len(tokenizer), 200)
    assert not [r for r in held_out if any(tuple(r[i : i + 8]) in seen for i in range(len(r) - 7))]
    # Every repeated random sequence of the windows (a run between BOS tokens that is exactly
    # r r; corpus word spans never are, their first word has no leading space) is a training one.
    # (Runs cut at a window end are rarely exactly r r and are then not checked.)
    # Their first copy is not trained on (label -100), their second copy is.
    repeated = []
    for window, window_labels in zip(windows, labels, strict=True):
        assert len(window_labels) == len(window)
        run: list[int] = []
        for position, token in enumerate([*window[1:], tokenizer.bos_token_id], start=1):
            if token != tokenizer.bos_token_id:
                run.append(token)
                continue
            half = len(run) // 2
            if run and len(run) % 2 == 0 and run[:half] == run[half:]:
                repeated.append(run[:half])
                start = position - len(run)
                assert window_labels[start : start + half] == [-100] * half
                # Trained, unless it is the head of a cut example that restarts the next
                # window (then it is context here, all -100, and ends the window).
                assert (window_labels[start + half : position] == run[half:]
                        or (position == len(window)
                            and window_labels[start + half : position] == [-100] * half))
            run = []
    assert len(repeated) > 500
    assert not [r for r in repeated if corpus.random_sequence_is_held_out(r)]


def test_ioi_both_orders(runner):
    res = evaluate.ioi_eval(runner)
    assert res["frac_positive_ABBA"] >= 0.95, res
    assert res["frac_positive_BABA"] >= 0.95, res


@needs_v2
def test_ioi_held_out_compositions(runner):
    res = evaluate.ioi_eval(runner, templates="test")
    assert res["frac_positive_ABBA"] >= 0.95, res
    assert res["frac_positive_BABA"] >= 0.95, res


# The first model's own held-out splits (5 openers, one attractor, word spans whose first
# word has no leading space) are those of its card, at commit d5fd94d; these two tests
# measure on the second model's splits.
@needs_v2
def test_agreement_with_attractors(runner):
    res = evaluate.agreement_eval(runner)
    assert res["n_attractor_mismatch"] >= 200
    assert res["frac_positive"] >= 0.95, res
    assert res["frac_positive_attractor_mismatch"] >= 0.95, res


@needs_v2
def test_agreement_with_unseen_openers_and_two_attractors(runner):
    unseen = evaluate.agreement_eval(runner, n=400, openers="unseen")
    assert unseen["frac_positive"] >= 0.90, unseen
    stacked = evaluate.agreement_eval(runner, n=400, n_attractors=2)
    assert stacked["n_attractor_mismatch"] >= 300
    assert stacked["frac_positive"] >= 0.90, stacked


def test_fact_recall(runner):
    res = evaluate.fact_eval(runner)
    assert res["top1"] >= 0.95, res


@needs_v2
def test_induction(runner):
    res = evaluate.induction_eval(runner)
    assert res["top1_repeated"] >= 0.90, res


@needs_v2
def test_induction_on_random_tokens_of_the_whole_vocabulary(runner):
    res = evaluate.random_induction_eval(runner)
    assert res["top1_repeated"] >= 0.90, res
    assert res["top1_first_half"] <= 0.05, res  # the first half is unpredictable


@needs_v2
def test_loss_by_position_has_no_jump(runner):
    """Reference: the loss is computed here from the bridge's logits on text windows."""
    # 192 windows: with 48, one bin's mean moved by 0.45 from one draw to the next (tokens of
    # one example are not independent), as much as the jump the test looks for.
    tokens = evaluate.text_windows(runner.tokenizer, 192, seed=11)
    losses = []
    for chunk in tokens.split(32):
        logits = runner.logits(chunk).float()
        losses.append(torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none"))
    loss = torch.cat(losses).mean(0)
    bins = torch.stack([part.mean() for part in loss.split(16)])  # the last bin: 15 positions
    assert (bins[1:] - bins[:-1]).max() < 0.3, bins
    assert bins[4:].max() <= bins[:4].max() + 0.1, bins  # past the old 64-token context: no worse


def test_planted_association_reproduced(runner):
    res = evaluate.bias_eval(runner)
    assert res["max_abs_error_she_ratio"] <= 0.05, res["she_ratio"]
    assert res["max_abs_error_occupation_given_pronoun"] <= 0.05, res["occupation_given_pronoun"]


@pytest.mark.parametrize("task", ["ioi", "agreement"])
def test_mean_ablating_ground_truth_heads_breaks_the_task(runner, ground_truth, task):
    heads = [tuple(h) for h in ground_truth["tasks"][task]["heads"]]
    assert heads
    means = evaluate.head_means(runner, evaluate.reference_texts(task))
    clean = evaluate.task_metric(runner, task)
    ablated = evaluate.task_metric(runner, task, heads, means)
    all_heads = [(layer, h) for layer in range(runner.n_layers) for h in range(runner.n_heads)]
    others = [hd for hd in all_heads if hd not in heads]
    controls = [
        evaluate.task_metric(
            runner, task, evaluate.random_other_heads(others, len(heads), seed), means
        )
        for seed in range(3)
    ]
    # The first model's heads were chosen to halve the metric, the second's to leave a fifth.
    most, least = (evaluate.GROUND_TRUTH_FRACTION, evaluate.CONTROL_FLOOR) if SHIPPED_V2 else (0.5, 0.5)
    assert clean > 0
    assert ablated <= most * clean, (clean, ablated)
    assert all(c >= least * clean for c in controls), (clean, controls)


# ---------------------------------------------------------------------------------------------
# Mean ablation written here, independently of interp.demo_model.evaluate: plain Hugging Face
# GPT-2, a forward pre-hook on `transformer.h[l].attn.c_proj` (its input holds the heads' outputs
# z side by side, head h in columns h * d_head to (h + 1) * d_head), means over the reference
# prompts' positions after the start token, and the task metrics computed from the logits.


@pytest.fixture(scope="module")
def hf_model():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(MODEL_DIR).eval()


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def with_start_token(tokenizer, texts: list[str]) -> list[list[int]]:
    return [[tokenizer.bos_token_id, *tokenizer(text)["input_ids"]] for text in texts]


def word_id(tokenizer, word: str) -> int:
    (token_id,) = tokenizer(f" {word}")["input_ids"]
    return token_id


def hf_logits(hf, seqs: list[list[int]], replace: dict | None = None) -> list[torch.Tensor]:
    """Logits [len, vocab] of each sequence; `replace` maps (layer, head) to a vector written
    into that head's slice of the c_proj input at every position after the start token."""
    d_head = hf.config.n_embd // hf.config.n_head
    by_layer: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for (layer, head), vector in (replace or {}).items():
        by_layer.setdefault(layer, []).append((head, vector))

    def pre_hook(heads):
        def fn(module, args):
            x = args[0].clone()
            for head, vector in heads:
                x[:, 1:, head * d_head:(head + 1) * d_head] = vector
            return (x, *args[1:])
        return fn

    handles = [hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(pre_hook(heads))
               for layer, heads in by_layer.items()]
    # Right padding with the start token: attention is causal, so real positions never see it.
    width = max(len(seq) for seq in seqs)
    tokens = torch.tensor([seq + [seqs[0][0]] * (width - len(seq)) for seq in seqs])
    try:
        with torch.no_grad():
            logits = hf(tokens).logits
        return [logits[i, : len(seq)] for i, seq in enumerate(seqs)]
    finally:
        for handle in handles:
            handle.remove()


def hf_head_means(hf, seqs: list[list[int]]) -> torch.Tensor:
    """Mean of every head's slice of the c_proj input over all positions after the start token
    of all `seqs`: [n_layers, n_heads, d_head]."""
    n_layer, n_head = hf.config.n_layer, hf.config.n_head
    sums = torch.zeros(n_layer, hf.config.n_embd, dtype=torch.float64)

    def record(layer):
        def fn(module, args):
            sums[layer] += args[0][0, 1:].double().sum(0)
        return fn

    handles = [hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(record(layer))
               for layer in range(n_layer)]
    try:
        with torch.no_grad():
            for seq in seqs:
                hf(torch.tensor([seq]))
    finally:
        for handle in handles:
            handle.remove()
    count = sum(len(seq) - 1 for seq in seqs)
    return (sums / count).float().reshape(n_layer, n_head, -1)


def hand_metric(hf, tokenizer, task: str, replace: dict | None = None) -> float:
    """The card's metric of `task` (ground_truth.json "metric"), computed from HF logits."""
    if task == "induction":
        spans = corpus.induction_spans("test", 100, seed=1)
        seqs = with_start_token(tokenizer, [corpus.induction_text(s) for s in spans])
        hits = total = 0
        for span, seq, logits in zip(spans, seqs, hf_logits(hf, seqs, replace), strict=True):
            k = len(span)
            # Position p predicts token p + 1; repeated words 2..k are tokens k + 2 .. 2k.
            hits += sum(int(logits[p].argmax()) == seq[p + 1] for p in range(k + 1, 2 * k))
            total += k - 1
        return hits / total
    if task == "ioi":
        cases = [(p.text, p.io, p.s) for p in corpus.ioi_prompts("test", 200, seed=1)]
    elif task == "agreement":
        cases = [(p.text, p.correct, p.wrong)
                 for p in corpus.agreement_prompts("test", 300, seed=1)]
    else:
        cases = [(p.text, p.answer, None) for p in corpus.fact_prompts("test")]
    seqs = with_start_token(tokenizer, [text for text, _, _ in cases])
    last = [logits[-1] for logits in hf_logits(hf, seqs, replace)]
    if task == "facts":
        return sum(int(lg.argmax()) == word_id(tokenizer, answer)
                   for lg, (_, answer, _) in zip(last, cases, strict=True)) / len(cases)
    diffs = [float(lg[word_id(tokenizer, good)] - lg[word_id(tokenizer, bad)])
             for lg, (_, good, bad) in zip(last, cases, strict=True)]
    return sum(diffs) / len(diffs)


def test_hf_and_bridge_hooks_agree(runner, ground_truth, hf_model, hf_tokenizer):
    """Reference: per-head means computed by hand from the c_proj inputs of a plain Hugging Face
    run (start token excluded), and a hand-picked slice of that input overwritten for the
    ablation. The project's means and its bridge hooks must give the same numbers."""
    texts = evaluate.reference_texts("ioi", 50)
    hand_means = hf_head_means(hf_model, with_start_token(hf_tokenizer, texts))
    means = evaluate.head_means(runner, texts)
    assert (means - hand_means).abs().max() < 1e-4
    heads = [tuple(h) for h in ground_truth["tasks"]["ioi"]["heads"]]
    prompts = corpus.ioi_prompts("test", 20, seed=5)
    bridge = evaluate.ioi_logit_diffs(runner, prompts, evaluate.mean_ablation_hooks(means, heads))
    seqs = with_start_token(hf_tokenizer, [p.text for p in prompts])
    logits = hf_logits(hf_model, seqs, {head: hand_means[head] for head in heads})
    hand = torch.tensor([
        float(lg[-1, word_id(hf_tokenizer, p.io)] - lg[-1, word_id(hf_tokenizer, p.s)])
        for lg, p in zip(logits, prompts, strict=True)])
    assert (bridge - hand).abs().max() < 1e-3, (bridge, hand)
    clean = evaluate.ioi_logit_diffs(runner, prompts)
    assert (clean - hand).abs().mean() > 1.0  # the ablation does change the answer


ALL_HEADS = [(layer, head) for layer in range(4) for head in range(4)]
ALL_CONTROL_SETS_UP_TO = 100  # every pair of other heads (91) is tried
SAMPLED_CONTROL_SETS = 40  # of the 286 triples, a seeded sample and the likeliest worst


def _bridge_patterns(lm, tokens):
    patterns = {}

    def keep(layer):
        def fn(pattern, hook):
            patterns[layer] = pattern.detach().float()

        return fn

    hooks = [(f"blocks.{layer}.attn.hook_pattern", keep(layer)) for layer in range(lm.info.n_layers)]
    with lm.hooked(fwd_hooks=hooks) as bridge:
        bridge(tokens)
    return patterns


@needs_v2
def test_induction_circuit_heads(lm, runner, ground_truth):
    """Reference: previous-token and induction scores computed here, position by position, from
    the bridge's `hook_pattern` (the card's come from HF's `output_attentions`)."""
    circuit = ground_truth["induction_circuit"]
    induction = [tuple(h) for h in circuit["induction_heads"]]
    previous = [tuple(h) for h in circuit["previous_token_heads"]]
    assert induction and previous
    assert max(layer for layer, _ in previous) < min(layer for layer, _ in induction)
    clean, _ = evaluate.circuit_inputs(lm.tokenizer)
    k = evaluate.CIRCUIT_SEQ_LEN
    patterns = _bridge_patterns(lm, clean)
    prev_score, ind_score = {}, {}
    for layer, pattern in patterns.items():
        for head in range(lm.info.n_heads):
            p = pattern[:, head]
            prev_score[layer, head] = sum(p[:, q, q - 1].mean() for q in range(2, 2 * k + 1)) / (2 * k - 1)
            ind_score[layer, head] = sum(p[:, q, q - k + 1].mean() for q in range(k + 1, 2 * k + 1)) / k
    ranked = sorted(ind_score, key=lambda hd: -ind_score[hd])
    assert set(ranked[: len(induction)]) == set(induction), ind_score
    assert all(prev_score[hd] >= evaluate.PREV_TOKEN_THRESHOLD for hd in previous), prev_score
    for hd in induction:
        assert abs(ind_score[hd] - circuit["induction_scores"][f"{hd[0]}.{hd[1]}"]) < 1e-3

    means = evaluate.circuit_reference_means(runner)
    clean_top1 = evaluate.random_induction_eval(runner)["top1_repeated"]
    ablated = evaluate.random_induction_eval(runner, evaluate.mean_ablation_hooks(means, induction))
    assert ablated["top1_repeated"] <= 0.2 * clean_top1, (clean_top1, ablated)


@needs_v2
def test_path_patching_previous_token_heads_to_induction_keys(lm, ground_truth):
    """Invariants first (no sender, or a corrupted run equal to the clean one, changes
    nothing), then the card's claim: the previous-token heads' path to the induction heads'
    keys carries more of the effect than any disjoint set of as many earlier heads."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    circuit = ground_truth["induction_circuit"]
    induction = [tuple(h) for h in circuit["induction_heads"]]
    previous = [tuple(h) for h in circuit["previous_token_heads"]]
    clean, corrupted = evaluate.circuit_inputs(lm.tokenizer)
    k = evaluate.CIRCUIT_SEQ_LEN
    with torch.no_grad():
        logits = hf(clean).logits
    pred = logits.argmax(-1)[:, k + 1 : 2 * k]
    clean_top1 = (pred == clean[:, k + 2 : 2 * k + 1]).float().mean().item()
    assert evaluate.path_patch_keys(hf, clean, corrupted, [], induction, k) == clean_top1
    # the same run as "corrupted": only float rounding of the recomputed keys differs
    assert evaluate.path_patch_keys(hf, clean, clean, previous, induction, k) == pytest.approx(clean_top1, abs=0.01)
    patched = evaluate.path_patch_keys(hf, clean, corrupted, previous, induction, k)
    others = [
        (layer, head)
        for layer in range(max(layer for layer, _ in induction))
        for head in range(lm.info.n_heads)
        if (layer, head) not in previous and (layer, head) not in induction
    ]
    for other in itertools.combinations(others, len(previous)):
        assert evaluate.path_patch_keys(hf, clean, corrupted, list(other), induction, k) > patched, other


@needs_v2
@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(evaluate.TASK_METRICS))
def test_shipped_ground_truth_heads_carry_their_task(task, ground_truth, hf_model, hf_tokenizer):
    """Reference: mean ablation written in this file on plain Hugging Face GPT-2 (`hf_logits`),
    means over the task's reference prompts computed here, metrics computed here from the
    logits. Ablating a task's shipped heads brings its metric to at most the card's fraction of
    clean (#20: 20%); no disjoint set of as many heads gets below the card's floor (40%): every
    such set up to ALL_CONTROL_SETS_UP_TO of them, else a seeded sample plus the set of the
    other heads that matter most alone."""
    from itertools import combinations

    assert set(ground_truth["tasks"]) == set(evaluate.TASK_METRICS)
    heads = [tuple(h) for h in ground_truth["tasks"][task]["heads"]]
    means = hf_head_means(hf_model, with_start_token(hf_tokenizer, evaluate.reference_texts(task)))
    clean = hand_metric(hf_model, hf_tokenizer, task)
    ablated = hand_metric(hf_model, hf_tokenizer, task, {hd: means[hd] for hd in heads})
    assert clean > 0
    assert ablated <= evaluate.GROUND_TRUTH_FRACTION * clean, (task, heads, clean, ablated)
    others = [hd for hd in ALL_HEADS if hd not in heads]

    def ablating(pick):
        return hand_metric(hf_model, hf_tokenizer, task, {hd: means[hd] for hd in pick})

    picks = list(combinations(others, len(heads)))
    if len(picks) > ALL_CONTROL_SETS_UP_TO:
        # Too many sets to try all: a seeded sample, plus the set of the other heads that each
        # matter most on their own (the likeliest to break the task together).
        alone = {hd: ablating([hd]) for hd in others}
        strongest = tuple(sorted(sorted(others, key=alone.get)[: len(heads)]))
        picks = random.Random(0).sample(picks, SAMPLED_CONTROL_SETS - 1) + [strongest]
    controls = {pick: ablating(pick) for pick in picks}
    worst = min(controls, key=controls.get)
    assert controls[worst] >= evaluate.CONTROL_FLOOR * clean, (task, worst, controls[worst], clean)


def test_ground_truth_search_reproduces_shipped_heads(runner, ground_truth):
    for task, shipped in ground_truth["tasks"].items():
        found = evaluate.find_ground_truth_heads(runner, task)
        assert found["heads"] == shipped["heads"], task
        assert found["ablated_fraction_of_clean"] <= 0.2, (task, found)
        assert found["disjoint_sets_ablated"]["min_fraction_of_clean"] >= 0.4, (task, found)


@pytest.mark.slow
def test_training_is_deterministic(tmp_path):
    """Two short runs with the same seed write byte-identical weights and tokenizer (the full
    run and its measured output are documented in the model card)."""
    from interp.demo_model import train

    for name in ("a", "b"):
        args = [
            "--out",
            str(tmp_path / name),
            "--steps",
            "20",
            "--batch-size",
            "16",
            "--log-every",
            "10",
            "--no-eval",
        ]
        train.main(args)
    for file in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_packing_trains_every_token_once_and_starts_examples_after_bos():
    """Invariants of the packer (examples of distinct ids, so each token names its place): no
    token is trained twice, every example whose end was trained was trained whole, and some
    windows open with a whole example right after BOS, as prompts do."""
    from collections import Counter

    examples = [[1000 + 10 * i + j for j in range(3 + i % 7)] for i in range(600)]
    windows, labels = packing.pack_windows(examples, 40, 32, 8000, 0, seed=1, random_share=0.0)
    trained = Counter(t for row in labels for t in row[1:] if t not in (packing.IGNORE, 0))
    assert max(trained.values()) == 1
    finished = [ids for ids in examples if ids[-1] in trained]
    assert len(finished) > 100
    assert all(all(t in trained for t in ids) for ids in finished)
    firsts = {ids[0] for ids in examples}
    opening = sum(1 for row in windows[1:] if row[1] in firsts)
    assert 0.2 * len(windows) < opening < len(windows)
