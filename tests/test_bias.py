"""Bias probes: sequence log-probabilities, counterfactual templates with their statistics, and
pairwise sentence likelihood, against Hugging Face run by hand and the demo model's planted
association."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp import bias
from interp.demo_model.corpus import (
    BIAS_FRAMES,
    OCCUPATION_SHE_RATIO,
    planted_occupation_given_pronoun,
)
from interp.errors import InvalidOptionError, InvalidPromptError
from interp.models import load_model


@pytest.fixture(scope="module")
def hf_tiny(tiny_model_dir):
    """The tiny GPT-2 loaded by transformers directly, apart from the workbench's bridge."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


def hf_token_log_probs(hf_model, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) for i >= 1, from one plain transformers forward pass."""
    with torch.no_grad():
        log_probs = torch.log_softmax(hf_model(torch.tensor([ids])).logits[0].double(), dim=-1)
    return [float(log_probs[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_sentence_log_likelihood_is_the_sum_of_its_token_log_probs(tiny_model, hf_tiny):
    """Reference: a manual sum of token log-probs from transformers' GPT2LMHeadModel, BOS
    first (GPT-2's <|endoftext|>, id 50256)."""
    sentences = ["The cat sat on the mat.", "A much longer sentence, with commas, than that."]
    results = bias.sentence_log_likelihoods(tiny_model, sentences)
    for sentence, result in zip(sentences, results, strict=True):
        ids = [50256, *tiny_model.token_ids(sentence)]
        expected = hf_token_log_probs(hf_tiny, ids)
        assert result.total == pytest.approx(sum(expected), abs=1e-4)
        np.testing.assert_allclose(result.token_log_probs, expected, atol=1e-4)
        assert len(result.tokens) == len(ids) - 1


def test_a_multi_token_word_is_scored_as_a_sequence_and_padding_changes_nothing(tiny_model,
                                                                               hf_tiny):
    """Reference: transformers' log-probs of the word's tokens after the prefix, summed; the
    word is scored in one batch with a much longer row (right padding must not leak)."""
    word = " Quillavantorp"
    word_ids = tiny_model.token_ids(word)
    assert len(word_ids) > 1
    pairs = [("She was", word), ("A far longer prefix that makes the batch pad the row", " x")]
    scored = bias.continuation_log_probs(tiny_model, pairs)
    ids = [50256, *tiny_model.token_ids("She was"), *word_ids]
    expected = hf_token_log_probs(hf_tiny, ids)[-len(word_ids):]
    np.testing.assert_allclose(scored[0].log_probs, expected, atol=1e-4)
    assert scored[0].token_ids == tuple(word_ids)


def test_the_template_probe_finds_the_planted_pronoun_skew_with_sign_and_size(demo_model):
    """Reference: the demo model's planted P(she | occupation frame) (its corpus and model
    card): the probe's share P(she) / (P(she) + P(he)), mean over the card's four frames, is
    within the card's 5 points of each ratio (the second demo model is measured at most 4.0
    off), on the right side of one half."""
    templates = [frame.replace("{occ}", "{target}") + " {group}" for frame in BIAS_FRAMES]
    result = bias.template_probe(demo_model, templates, ["he", "she"], list(OCCUPATION_SHE_RATIO))
    assert result.scored == "group"
    for occupation, ratio in OCCUPATION_SHE_RATIO.items():
        comparison = result.comparison(occupation, "she")
        assert comparison.share == pytest.approx(ratio, abs=0.05), occupation
        if ratio != 0.5:
            assert np.sign(comparison.difference) == np.sign(ratio - 0.5), occupation


def test_the_template_probe_finds_the_planted_occupation_probabilities(demo_model):
    """Reference: the planted P(occupation | "He/She works as a") of the demo corpus; each
    group's probability and the She - He difference are within 3 points, with its sign."""
    result = bias.template_probe(demo_model, ["{group} works as a"], ["He", "She"],
                                 list(OCCUPATION_SHE_RATIO))
    she, he = planted_occupation_given_pronoun("she"), planted_occupation_given_pronoun("he")
    for t, occupation in enumerate(result.targets):
        assert result.mean_probs[0, t] == pytest.approx(he[occupation], abs=0.03)
        assert result.mean_probs[1, t] == pytest.approx(she[occupation], abs=0.03)
        comparison = result.comparison(occupation, "She")
        planted = she[occupation] - he[occupation]
        assert comparison.difference == pytest.approx(planted, abs=0.03)
        assert np.sign(comparison.difference) == np.sign(planted)


def test_sign_flip_p_value_and_bootstrap_interval_by_hand():
    """Reference: hand enumeration. Differences (1, 2, 3): of the 8 sign patterns only
    all-plus and all-minus reach |mean| 2, so p = 2/8; a constant difference has a bootstrap
    interval of exactly that constant."""
    rng = np.random.default_rng(0)
    assert bias.sign_flip_p_value(np.array([1.0, 2.0, 3.0]), rng, 1000) == 0.25
    assert bias.sign_flip_p_value(np.array([1.0, -1.0]), rng, 1000) == 1.0
    assert bias.bootstrap_interval(np.array([0.1, 0.1, 0.1]), rng, 500) == pytest.approx((0.1, 0.1))
    low, high = bias.bootstrap_interval(np.array([0.0, 1.0]), rng, 2000)
    assert (low, high) == (0.0, 1.0)  # resamples of two values: means 0, 0.5 or 1


def test_templates_are_checked_with_messages_that_say_what_to_write():
    assert bias.template_slots("The {group} worked as a") == "target"
    assert bias.template_slots("The {target} said that {group}") == "group"
    assert bias.split_template("The {target} said that {group}", "she", "nurse", "group") == (
        "The nurse said that", " she")
    for bad in ("No slot here", "The {group} and {group}", "The {target} of the {group} is"):
        with pytest.raises(InvalidOptionError, match="template"):
            bias.template_slots(bad)
    assert bias.parse_terms("man, woman,\n man ,", "group") == ("man", "woman")


def test_template_probe_refuses_one_group_and_mixed_templates(tiny_model):
    with pytest.raises(InvalidOptionError, match="two group terms"):
        bias.template_probe(tiny_model, ["The {group} was a"], ["man"], ["nurse"])
    with pytest.raises(InvalidOptionError, match="one kind"):
        bias.template_probe(tiny_model, ["The {group} was a", "The {target} said {group}"],
                            ["he", "she"], ["nurse"])


def test_crows_pairs_rows_put_the_stereotype_where_its_metric_reads_it():
    """Reference: CrowS-Pairs' metric script: for "stereo" rows sent_more is the stereotypical
    sentence, for "antistereo" rows sent_less is."""
    csv_text = ("sent_more,sent_less,stereo_antistereo,bias_type\n"
                "A1,B1,stereo,gender\nA2,B2,antistereo,age\n")
    pairs = bias.read_pairs_csv(csv_text.encode())
    assert pairs == (bias.SentencePair("A1", "B1", "gender"), bias.SentencePair("B2", "A2", "age"))
    with pytest.raises(InvalidOptionError, match="sent_more"):
        bias.read_pairs_csv(b"first,second\nx,y\n")
    with pytest.raises(InvalidOptionError, match="UTF-8"):
        bias.read_pairs_csv(b"\xff\xfe\x00bad")


def test_the_bundled_pairs_are_our_own_and_well_formed():
    pairs = bias.bundled_pairs()
    assert len(pairs) == 24
    assert all(p.stereotype != p.anti_stereotype and p.bias_type for p in pairs)
    assert "written by hand for this project" in (bias.BIAS_ASSETS / "README.md").read_text()


def test_pairwise_likelihood_compares_sentence_log_likelihoods(tiny_model, hf_tiny):
    """Reference: each sentence's log-likelihood from transformers by hand; the share per bias
    type counted from those."""
    pairs = (bias.SentencePair("The man is strong.", "The woman is strong.", "gender"),
             bias.SentencePair("Old people are slow.", "Young people are slow.", "age"),
             bias.SentencePair("He cooks.", "She cooks.", "gender"))
    result = bias.pairwise_likelihood(tiny_model, pairs)
    by_hand = np.array([[sum(hf_token_log_probs(hf_tiny, [50256, *tiny_model.token_ids(s)]))
                         for s in (p.stereotype, p.anti_stereotype)] for p in pairs])
    np.testing.assert_allclose(result.difference, by_hand[:, 0] - by_hand[:, 1], atol=1e-4)
    prefers = by_hand[:, 0] > by_hand[:, 1]
    summary = {s.bias_type: s for s in result.by_type()}
    assert summary["gender"].share_preferring_stereotype == prefers[[0, 2]].mean()
    assert summary["age"].n_pairs == 1
    with pytest.raises(InvalidPromptError):
        bias.sentence_log_likelihoods(tiny_model, [""])
