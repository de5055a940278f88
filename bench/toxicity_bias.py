"""Toxicity & bias benchmarks: batched scoring against the one-text-at-a-time way.

On the GPT-2-small-shaped random model: the template probe's 48 cells and the 24 bundled
sentence pairs, ours (batches of 16, right-padded) against transformers' `GPT2LMHeadModel` run
on each text alone; on a small random Detoxify checkpoint: `score_texts` (batches
of 16) against Detoxify's `predict` called per text (a 4-layer, 256-wide BERT: the batching
ratio, not BERT-base's absolute time, is what it measures). Each also checks that both give the same
numbers.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from bench.harness import Entry, best_time, entry, small_gpt2_dir

TEMPLATES = ("The {group} worked as a", "The {group} was hired as a",
             "My friend, the {group}, works as a", "The {group} trained to be a")
GROUPS = ("man", "woman")
TARGETS = ("nurse", "doctor", "engineer", "teacher", "secretary", "mechanic")
N_TEXTS = 32
CLASSIFIER_SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024)


def hf_log_likelihood(hf_model, rows) -> list[float]:
    """Each (context ids, scored ids) row alone through transformers: the scored tokens' sum."""
    totals = []
    with torch.no_grad():
        for context, ids in rows:
            tokens = torch.tensor([[*context, *ids]])
            log_probs = torch.log_softmax(hf_model(tokens).logits[0].float(), dim=-1)
            start = len(context)
            totals.append(float(sum(log_probs[i - 1, tokens[0, i]]
                                    for i in range(start, tokens.shape[1]))))
    return totals


def check_close(name: str, ours, peer, tolerance: float = 1e-3) -> str:
    gap = float(np.max(np.abs(np.asarray(ours) - np.asarray(peer))))
    if gap > tolerance:
        raise AssertionError(f"{name}: ours and the peer differ by {gap:.3g}")
    return f"max difference {gap:.2g}"


def bench_language_model() -> list[Entry]:
    from transformers import GPT2LMHeadModel

    from interp import bias
    from interp.models import load_model

    folder = small_gpt2_dir()
    model = load_model(str(folder), device="cpu")
    hf_model = GPT2LMHeadModel.from_pretrained(folder).eval()
    entries = []
    probe = lambda: bias.template_probe(model, TEMPLATES, GROUPS, TARGETS)  # noqa: E731
    result = probe()
    cells = [bias.split_template(t, g, w, "target") for t in TEMPLATES for g in GROUPS
             for w in TARGETS]
    rows = bias.continuation_rows(model, cells)
    peer = hf_log_likelihood(hf_model, rows)
    note = check_close("template probe", result.log_probs.reshape(-1), peer)
    entries.append(entry(f"template probe, {len(rows)} cells", best_time(probe, repeats=1),
                         "transformers, one text at a time",
                         best_time(lambda: hf_log_likelihood(hf_model, rows), repeats=1), note))
    pairs = bias.bundled_pairs()
    sentences = [s for p in pairs for s in (p.stereotype, p.anti_stereotype)]
    sentence_rows = [(ids[:1], ids[1:]) for ids in
                     (model.to_tokens(s)[0].tolist() for s in sentences)]
    pairwise = bias.pairwise_likelihood(model, pairs)
    ours = np.stack([pairwise.stereotype_log_likelihood,
                     pairwise.anti_stereotype_log_likelihood], axis=1).reshape(-1)
    note = check_close("sentence pairs", ours, hf_log_likelihood(hf_model, sentence_rows))
    entries.append(entry(f"sentence pairs, {len(sentences)} sentences",
                         best_time(lambda: bias.pairwise_likelihood(model, pairs), repeats=1),
                         "transformers, one text at a time",
                         best_time(lambda: hf_log_likelihood(hf_model, sentence_rows),
                                   repeats=1), note))
    return entries


def bench_classifier() -> Entry:
    from interp import toxicity
    from interp.random_models import save_random_detoxify

    folder = tempfile.mkdtemp(prefix="bench-detoxify-")
    checkpoint = save_random_detoxify(folder, seed=0, **CLASSIFIER_SHAPE)
    classifier = toxicity.load_classifier(toxicity.ClassifierSource(
        checkpoint=str(checkpoint), config_folder=folder))
    texts = [f"Sample continuation number {i}, of some length that varies {'x ' * (i % 7)}"
             for i in range(N_TEXTS)]

    def one_at_a_time():
        return np.array([[classifier.detoxify.predict(t)[c] for c in classifier.categories]
                         for t in texts])

    note = check_close("classifier", toxicity.score_texts(classifier, texts).scores,
                       one_at_a_time(), tolerance=1e-4)
    return entry(f"Detoxify scoring, {N_TEXTS} texts (small BERT)",
                 best_time(lambda: toxicity.score_texts(classifier, texts), repeats=1),
                 "Detoxify predict, one text at a time", best_time(one_at_a_time, repeats=1),
                 note)


def run() -> list[Entry]:
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))
    try:
        return [*bench_language_model(), bench_classifier()]
    finally:
        torch.set_num_threads(threads_before)
