"""Confidence traces, consistency under rewrites and the failure catalogue, against
transformers run by hand and the generation helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp import behaviour
from interp.errors import InvalidOptionError, InvalidPromptError
from interp.generation import generate


@pytest.fixture(scope="module")
def hf_tiny(tiny_model_dir):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()


def hf_distributions(hf_model, ids: list[int]) -> torch.Tensor:
    """Next-token probabilities [len(ids), vocab] from transformers directly."""
    with torch.no_grad():
        return torch.softmax(hf_model(torch.tensor([ids])).logits[0].double(), dim=-1)


def test_the_trace_matches_entropy_and_probabilities_by_hand(tiny_model, hf_tiny):
    """Reference: transformers' softmax at each position, entropy -sum p log p by hand."""
    text = "The cat sat on the mat, and then"
    trace = behaviour.confidence_along(tiny_model, text, threshold=0.3)
    ids = [50256, *tiny_model.token_ids(text)]
    probs = hf_distributions(hf_tiny, ids)[:-1]
    entropy = -(probs * probs.log()).sum(dim=-1)
    following = torch.tensor(ids[1:])
    np.testing.assert_allclose(trace.entropy, entropy.numpy(), atol=1e-4)
    np.testing.assert_allclose(trace.top1_prob, probs.max(dim=-1).values.numpy(), atol=1e-5)
    np.testing.assert_allclose(trace.token_prob, probs[torch.arange(len(following)), following],
                               atol=1e-5)
    assert trace.token_ids == tuple(ids[1:]) and len(trace.tokens) == len(ids) - 1
    assert trace.prompt_tokens == len(ids) - 1


def test_low_confidence_spans_are_runs_below_the_threshold():
    """Reference: reading the runs off a hand-made trace."""
    trace = behaviour.ConfidenceTrace(
        model_name="hand", text="", tokens=tuple("abcdef"), token_ids=tuple(range(6)),
        entropy=np.zeros(6), top1_prob=np.array([0.9, 0.1, 0.2, 0.8, 0.1, 0.05]),
        top1_tokens=tuple("abcdef"), token_prob=np.zeros(6), prompt_tokens=6, threshold=0.3)
    assert trace.low_spans == ((1, 3), (4, 6))
    with pytest.raises(InvalidOptionError):
        behaviour.check_threshold(1.5)


def test_a_generation_trace_holds_the_greedy_tokens(tiny_model):
    """Reference: `interp.generation.generate` at temperature 0, called directly."""
    prompt = "Once upon a time"
    trace = behaviour.confidence_of_generation(tiny_model, prompt, max_new_tokens=6)
    greedy = [t.token_id for t in generate(tiny_model, prompt, max_new_tokens=6,
                                           temperature=0.0)]
    prompt_ids = tiny_model.token_ids(prompt)
    assert trace.token_ids == (*prompt_ids, *greedy)
    assert trace.prompt_tokens == len(prompt_ids)


def test_consistency_scores_the_answer_after_each_rewrite(tiny_model, hf_tiny):
    """Reference: the product of the answer's token probabilities from transformers."""
    rewrites = ["The capital of France is", "France's capital city is"]
    result = behaviour.consistency(tiny_model, rewrites, answer="Paris Quillavantorp")
    answer_ids = tiny_model.token_ids(" Paris Quillavantorp")
    expected = []
    for rewrite in rewrites:
        ids = [50256, *tiny_model.token_ids(rewrite), *answer_ids]
        probs = hf_distributions(hf_tiny, ids)
        start = len(ids) - len(answer_ids)
        expected.append(float(np.prod([probs[i - 1, ids[i]] for i in range(start, len(ids))])))
    np.testing.assert_allclose(result.answer_prob, expected, rtol=1e-3)
    assert result.spread == pytest.approx(max(expected) - min(expected), rel=1e-3)


def test_token_edits_are_small_surface_changes():
    """Reference: the edits written out by hand."""
    assert behaviour.token_edits("The Eiffel Tower is here") == (
        "the eiffel tower is here", "The Efifel Tower is here", "The  Eiffel Tower is here",
        "Eiffel Tower is here")
    with pytest.raises(InvalidPromptError):
        behaviour.token_edits("  ")


def test_repeated_ngram_share_by_hand():
    """Reference: 1 2 3 1 2 3 has 3-grams 123 231 312 123, one of four a repeat."""
    assert behaviour.repeated_ngram_share([1, 2, 3, 1, 2, 3]) == 0.25
    assert behaviour.repeated_ngram_share([1, 2]) == 0.0


@pytest.mark.slow
def test_the_catalogue_runs_live_and_its_checks_read_the_model(tiny_model, hf_tiny):
    """Reference: greedy `generate` for each continuation, and transformers' argmax for the
    arithmetic check (tripped exactly when the answer's first token is not the top-1)."""
    cases = (behaviour.FailureCase("add", "arithmetic", "2 + 2 =", answer="4"),
             behaviour.FailureCase("loop", "repetition", "a b c a b c"),
             behaviour.FailureCase("made up", "made_up", "Zorblax is in"),
             behaviour.FailureCase("not", "negation", "Paris is in", answer="France",
                                   negated="Paris is not in"))
    result = behaviour.run_catalogue(tiny_model, cases, max_new_tokens=4)
    for case, outcome in zip(cases, result.outcomes, strict=True):
        greedy = "".join(t.text for t in generate(tiny_model, case.prompt, max_new_tokens=4,
                                                  temperature=0.0, stop=()))
        assert outcome.continuation == greedy
        probs = hf_distributions(hf_tiny, [50256, *tiny_model.token_ids(case.prompt)])[-1]
        assert outcome.top1_prob == pytest.approx(float(probs.max()), abs=1e-5)
    top = int(hf_distributions(hf_tiny, [50256, *tiny_model.token_ids("2 + 2 =")])[-1].argmax())
    assert result.outcomes[0].failed == (top != tiny_model.token_ids(" 4")[0])
    assert result.outcomes[2].failed == (result.outcomes[2].top1_prob > 0.5)
    with pytest.raises(InvalidOptionError, match="repetition"):
        behaviour.case_from_row("x", "rhyming", "prompt")
    with pytest.raises(InvalidOptionError, match="negated"):
        behaviour.case_from_row("x", "negation", "prompt", answer="a")
