"""The logit lens and direct logit attribution against Hugging Face's own GPT-2 modules.

References: the lens rows are recomputed from `GPT2LMHeadModel(output_hidden_states=True)`,
its `ln_f` and `lm_head`, as full log-softmax distributions (top-k, entropy, KL and ranks by
brute force over the whole vocabulary); DLA's parts are checked against the model's own logits
(their sum) and against one head's output rebuilt from the input of HF's `c_proj`.
"""

from __future__ import annotations

import pytest
import torch

from interp import logit_lens as lens_module
from interp.errors import InvalidOptionError, InvalidPromptError
from interp.logit_lens import chunk_top, direct_logit_attribution, lens_of_ids, logit_lens
from interp.models import load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"
PARIS, MARY, JOHN = 6342, 5335, 1757  # " Paris", " Mary", " John" in GPT-2's vocabulary


def hf_lens(model, token_ids):
    """Every row's logits [rows, pos, V] from HF's modules: hidden states after the embeddings
    and each block (HF's last hidden state already has ln_f applied), then ln_f and lm_head."""
    hf = model.bridge.original_model
    with torch.no_grad():
        out = hf(torch.tensor([token_ids]), output_hidden_states=True)
        states = out.hidden_states
        rows = [hf.lm_head(hf.transformer.ln_f(h[0])) for h in states[:-1]]
        rows.append(out.logits[0])
    return torch.stack(rows)


def check_against_reference(result, logits, tracked=()):
    log_probs = logits.log_softmax(-1)
    final = log_probs[-1]
    top = log_probs.topk(result.k, dim=-1)
    assert torch.allclose(result.top_log_probs, top.values, atol=1e-4)
    assert torch.equal(result.top_ids, top.indices)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    assert torch.allclose(result.entropy, entropy, atol=1e-4)
    kl = (final.exp() * (final - log_probs)).sum(-1)
    assert torch.allclose(result.kl_to_final, kl, atol=1e-4)
    candidates = result.candidate_ids  # the final top-k at each position
    assert torch.equal(candidates, final.topk(result.k, dim=-1).indices)
    gathered = logits.gather(-1, candidates.expand(logits.shape[0], -1, -1))
    assert torch.allclose(result.candidate_log_probs,
                          log_probs.gather(-1, candidates.expand(logits.shape[0], -1, -1)),
                          atol=1e-4)
    for token in tracked:
        assert torch.allclose(result.probs_of(token), log_probs[..., token].exp(), atol=1e-5)
    if result.candidate_ranks is None:  # a lens run with ranks=False
        return
    above = (logits[..., None, :] > gathered[..., None]).sum(-1)
    assert torch.equal(result.candidate_ranks, above)
    for token in tracked:
        assert torch.equal(result.ranks_of(token),
                           (logits > logits[..., token, None]).sum(-1))


def test_every_row_matches_hugging_face_full_distributions(tiny_model):
    """Reference: HF's hidden states through its ln_f and lm_head, log-softmax over the whole
    vocabulary; the last row is the model's own output (its log-probs within 1e-4)."""
    result = logit_lens(tiny_model, PROMPT, k=5, track=(PARIS, MARY))
    assert result.top_ids.shape == (3, len(result.token_ids), 5)
    check_against_reference(result, hf_lens(tiny_model, list(result.token_ids)), (PARIS, MARY))
    assert result.kl_to_final[-1].abs().max() == 0


def test_blocks_and_vocabulary_chunks_change_nothing(tiny_model, monkeypatch):
    """Reference: the same brute-force distributions, with the lens forced to take 3 positions
    per block and 4096-column vocabulary chunks (the last one ragged, so both top-k paths run)."""
    monkeypatch.setattr(lens_module, "ROWS_PER_BLOCK", 6)
    monkeypatch.setattr(lens_module, "VOCAB_CHUNK", 4096)
    result = logit_lens(tiny_model, PROMPT, k=3, track=(JOHN,))
    check_against_reference(result, hf_lens(tiny_model, list(result.token_ids)), (JOHN,))


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


def test_without_ranks_every_other_number_is_unchanged(tiny_model):
    """Reference: HF's full distributions, as above; ranks are left out (None) and refused."""
    result = logit_lens(tiny_model, PROMPT, k=5, track=(PARIS,), ranks=False)
    check_against_reference(result, hf_lens(tiny_model, list(result.token_ids)), (PARIS,))
    assert result.candidate_ranks is None
    with pytest.raises(InvalidOptionError, match="ranks=True"):
        result.ranks_of(PARIS)


def test_last_row_is_the_demo_models_own_log_probs(demo_model):
    """Reference: the demo model's HF forward pass, log-softmax, at every position."""
    model = demo_model
    result = logit_lens(model, "Mary and John went to the park. John gave the ball to", k=5)
    hf = model.bridge.original_model
    with torch.no_grad():
        own = hf(torch.tensor([result.token_ids])).logits[0].log_softmax(-1)
    top = own.topk(5, dim=-1)
    assert torch.equal(result.top_ids[-1], top.indices)
    assert torch.allclose(result.top_log_probs[-1], top.values, atol=1e-4)
    assert torch.allclose(result.candidate_log_probs[-1], top.values, atol=1e-4)


def test_chunk_top_is_torch_topk():
    """Reference: torch.topk on the same random rows (group shortcut vs the full sort)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 2048, generator=generator)
    values, ids = chunk_top(logits, 5)
    expected = logits.topk(5, dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)


def test_untracked_tokens_and_bad_options_are_refused(tiny_model):
    result = logit_lens(tiny_model, "The cat", k=2)
    with pytest.raises(InvalidOptionError, match="track="):
        result.probs_of(PARIS)
    with pytest.raises(InvalidOptionError, match="k must be"):
        logit_lens(tiny_model, "The cat", k=0)


def test_long_context_is_cut_from_the_left_with_a_note(demo_model):
    """Reference: the same lens on the last n_ctx ids given directly."""
    n_ctx = demo_model.info.n_ctx
    ids = demo_model.to_tokens(" and".join(["The cat sat"] * 40))[0].tolist()
    assert len(ids) > n_ctx
    with pytest.raises(InvalidPromptError, match="at most"):
        lens_of_ids(demo_model, ids)
    cut = lens_of_ids(demo_model, ids, k=2, truncate_left=True)
    assert cut.dropped_tokens == len(ids) - n_ctx and "dropped" in cut.note
    direct = lens_of_ids(demo_model, ids[-n_ctx:], k=2)
    assert direct.note is None
    assert torch.equal(cut.top_ids, direct.top_ids)


def test_dla_parts_sum_to_the_logit_difference_at_every_position(tiny_model):
    """Reference: the logit difference read from HF's own logits (an invariant: the parts,
    with the final LayerNorm scale frozen, add up to it within 1e-3 of its magnitude)."""
    result = direct_logit_attribution(tiny_model, PROMPT, " Mary", " John")
    with torch.no_grad():
        logits = tiny_model.bridge.original_model(torch.tensor([result.token_ids])).logits[0]
    expected = logits[:, MARY] - logits[:, JOHN]
    assert torch.allclose(result.logit, expected, atol=1e-5)
    total = result.contributions.sum(-1)
    assert ((total - expected).abs() <= 1e-3 * expected.abs().clamp_min(1e-6)).all()
    alone = direct_logit_attribution(tiny_model, PROMPT)  # the predicted token, no contrast
    assert alone.target_id == int(logits[-1].argmax())
    assert torch.allclose(alone.contributions.sum(-1), logits[:, alone.target_id], rtol=1e-3)


def test_one_heads_dla_is_its_output_projected_by_hand(tiny_model):
    """Reference: head 2 of layer 1 rebuilt from the input of HF's c_proj (its d_head slice
    times the matching rows of c_proj's weight), centred, divided by the final LayerNorm's
    scale computed from ln_f's input, dotted with ln_f.weight * (W_U[Mary] - W_U[John])."""
    layer, head = 1, 2
    result = direct_logit_attribution(tiny_model, PROMPT, MARY, JOHN)
    hf = tiny_model.bridge.original_model
    seen = {}
    hooks = [hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(
                 lambda module, args: seen.__setitem__("merged", args[0][0])),
             hf.transformer.ln_f.register_forward_pre_hook(
                 lambda module, args: seen.__setitem__("final", args[0][0]))]
    try:
        with torch.no_grad():
            hf(torch.tensor([result.token_ids]))
    finally:
        for handle in hooks:
            handle.remove()
    d_head = tiny_model.info.d_head
    columns = slice(head * d_head, (head + 1) * d_head)
    weight = hf.transformer.h[layer].attn.c_proj.weight  # Conv1D: [in, out]
    output = seen["merged"][:, columns] @ weight[columns]
    final = seen["final"]
    scale = (final.var(-1, unbiased=False) + hf.config.layer_norm_epsilon).sqrt()
    unembed = hf.lm_head.weight
    direction = hf.transformer.ln_f.weight * (unembed[MARY] - unembed[JOHN])
    by_hand = ((output - output.mean(-1, keepdim=True)) @ direction) / scale
    column = result.labels.index(f"L{layer}H{head}")
    assert torch.allclose(result.contributions[:, column], by_hand, atol=1e-6)
    assert torch.allclose(result.head_grid()[layer, head], by_hand[-1])


def test_dla_refuses_targets_that_are_not_one_token(tiny_model):
    with pytest.raises(InvalidOptionError, match="exactly one token"):
        direct_logit_attribution(tiny_model, PROMPT, " Marylebone station")
    with pytest.raises(InvalidOptionError, match="target itself"):
        direct_logit_attribution(tiny_model, PROMPT, MARY, " Mary")
