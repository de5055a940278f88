"""Acceptance tests of the bundled demo model (issue 3), on held-out prompts.

They load the shipped folder through the project's loader and check the documented behaviours
and the documented ground-truth heads; nothing here retrains the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from interp import load_model  # noqa: E402
from interp.demo_model import corpus, evaluate  # noqa: E402
from interp.demo_model.tokenizer import check_single_tokens  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-gpt2"


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
    assert (lm.info.n_layers, lm.info.n_heads, lm.info.d_model) == (4, 4, 128)
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
    """The whole corpus the shipped model was trained on (examples and seed from metrics.json)
    holds no held-out prompt."""
    record = json.loads((MODEL_DIR / "metrics.json").read_text())
    texts = corpus.generate_corpus(record["n_examples"], seed=int(record["args"]["seed"]))
    assert_no_held_out_prompt_in(texts)


def test_ioi_both_orders(runner):
    res = evaluate.ioi_eval(runner)
    assert res["frac_positive_ABBA"] >= 0.95, res
    assert res["frac_positive_BABA"] >= 0.95, res


def test_agreement_with_attractors(runner):
    res = evaluate.agreement_eval(runner)
    assert res["n_attractor_mismatch"] >= 200
    assert res["frac_positive"] >= 0.95, res
    assert res["frac_positive_attractor_mismatch"] >= 0.95, res


def test_fact_recall(runner):
    res = evaluate.fact_eval(runner)
    assert res["top1"] >= 0.95, res


def test_induction(runner):
    res = evaluate.induction_eval(runner)
    assert res["top1_repeated"] >= 0.90, res


def test_planted_association_reproduced(runner):
    res = evaluate.bias_eval(runner)
    assert res["max_abs_error_she_ratio"] <= 0.05, res["she_ratio"]
    assert res["max_abs_error_occupation_given_pronoun"] <= 0.05, res["occupation_given_pronoun"]


def test_mean_ablating_ground_truth_ioi_heads_halves_ioi(runner, ground_truth):
    heads = [tuple(h) for h in ground_truth["tasks"]["ioi"]["heads"]]
    assert heads
    means = evaluate.head_means(runner, evaluate.reference_texts("ioi"))
    clean = evaluate.task_metric(runner, "ioi")
    ablated = evaluate.task_metric(runner, "ioi", heads, means)
    all_heads = [(layer, h) for layer in range(runner.n_layers) for h in range(runner.n_heads)]
    others = [hd for hd in all_heads if hd not in heads]
    controls = [
        evaluate.task_metric(
            runner, "ioi", evaluate.random_other_heads(others, len(heads), seed), means
        )
        for seed in range(3)
    ]
    assert clean > 0
    assert ablated <= 0.5 * clean, (clean, ablated)
    assert all(c > 0.5 * clean for c in controls), (clean, controls)


def test_hf_and_bridge_hooks_agree(lm, runner, ground_truth):
    """The HF c_proj emulation of hook_z ablates exactly what the bridge's hook_z does."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(MODEL_DIR).eval()
    hf_runner = evaluate.as_runner(hf, lm.tokenizer)
    heads = [tuple(h) for h in ground_truth["tasks"]["ioi"]["heads"]]
    means = evaluate.head_means(runner, evaluate.reference_texts("ioi", 50))
    hf_means = evaluate.head_means(hf_runner, evaluate.reference_texts("ioi", 50))
    assert (means - hf_means).abs().max() < 1e-4
    prompts = corpus.ioi_prompts("test", 20, seed=5)
    hooks = evaluate.mean_ablation_hooks(means, heads)
    a = evaluate.ioi_logit_diffs(runner, prompts, hooks)
    b = evaluate.ioi_logit_diffs(hf_runner, prompts, hooks)
    assert (a - b).abs().max() < 1e-3


@pytest.mark.slow
def test_ground_truth_search_reproduces_shipped_heads(runner, ground_truth):
    for task, shipped in ground_truth["tasks"].items():
        found = evaluate.find_ground_truth_heads(runner, task, n_controls=0)
        assert found["heads"] == shipped["heads"], task


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
