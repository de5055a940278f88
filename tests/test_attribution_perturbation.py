"""Occlusion against logit changes computed by hand, and the perturbation analysis against
Hugging Face's own greedy generation."""

from __future__ import annotations

import pytest
import torch

from interp.attribution import AttributionTarget, attribute
from interp.attribution.perturbation import perturbation_analysis
from interp.errors import InvalidOptionError

PROMPT = "The cat sat on the mat"
TARGET = AttributionTarget("token", token_id=262, contrast_id=None, label=" the")


def last_logit(model, row: list[int], token_id: int = 262) -> float:
    return float(model.logits(torch.tensor([row]))[0, -1, token_id])


def test_leave_one_out_equals_the_logit_change_by_hand(tiny_model):
    """Reference: plain forward passes on the prompt with each token deleted by hand."""
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    result = attribute(tiny_model, PROMPT, "occlusion", target=TARGET, mode="leave_one_out")
    full = last_logit(tiny_model, ids)
    expected = [0.0] + [full - last_logit(tiny_model, ids[:p] + ids[p + 1:])
                        for p in range(1, len(ids))]
    torch.testing.assert_close(result.scores, torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_substitution_equals_the_logit_change_by_hand(tiny_model):
    """Reference: plain forward passes with each token replaced by ' dog' by hand."""
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    dog = tiny_model.token_ids(" dog")[0]
    result = attribute(tiny_model, PROMPT, "occlusion", target=TARGET, mode="substitute",
                       replacement=" dog")
    full = last_logit(tiny_model, ids)
    expected = [0.0] + [full - last_logit(tiny_model, ids[:p] + [dog] + ids[p + 1:])
                        for p in range(1, len(ids))]
    torch.testing.assert_close(result.scores, torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_neighbour_substitution_averages_over_the_closest_embeddings(tiny_model):
    """Reference: neighbours by normalised dot products of the embedding matrix, by hand."""
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    embeddings = tiny_model.bridge.original_model.transformer.wte.weight.detach()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    full = last_logit(tiny_model, ids)
    result = attribute(tiny_model, PROMPT, "occlusion", target=TARGET, mode="neighbours",
                       n_neighbours=2)
    for p in (1, 4):
        similarity = unit @ unit[ids[p]]
        similarity[ids[p]] = -2.0
        neighbours = similarity.topk(2).indices.tolist()
        drops = [full - last_logit(tiny_model, ids[:p] + [n] + ids[p + 1:]) for n in neighbours]
        assert float(result.scores[p]) == pytest.approx(sum(drops) / 2, abs=1e-4)


def test_a_replacement_of_several_tokens_is_refused(tiny_model):
    with pytest.raises(InvalidOptionError, match="exactly one token"):
        attribute(tiny_model, PROMPT, "occlusion", mode="substitute", replacement=" butterflies are")


def test_each_edit_generates_what_hugging_face_greedy_decoding_generates(tiny_model):
    """Reference: `generate(do_sample=False)` of the Hugging Face model on each edited prompt."""
    analysis = perturbation_analysis(tiny_model, PROMPT, target=TARGET, mode="leave_one_out",
                                     n_new_tokens=3)
    hf = tiny_model.bridge.original_model
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    for row in analysis.rows[:3]:
        edited = ids[:row.position] + ids[row.position + 1:]
        generated = hf.generate(torch.tensor([edited]), attention_mask=torch.ones(1, len(edited)),
                                max_new_tokens=3, do_sample=False, pad_token_id=0)
        assert row.continuation == tiny_model.decode(generated[0, len(edited):].tolist())
        assert row.replacement == "(deleted)"
        assert row.change == pytest.approx(last_logit(tiny_model, edited) - last_logit(tiny_model, ids), abs=1e-4)
