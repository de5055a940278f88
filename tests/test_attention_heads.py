"""Head scores on a model whose weights are set by hand, so each score's right answer is known.

The residual stream of the constructed 2-layer, 2-head GPT-2 (d_model 128, d_head 64) has a
token block (dims 0-31, a random vector per token), a position block (32-63, one-hot), and a
"previous token" block (64-95) that layer 0 writes. MLPs and every other head are zero.

- L0H0 is a previous-token head (query position p matches key position p - 1) whose values copy
  the token block into the previous-token block: the first half of an induction circuit.
- L0H1 is a duplicate-token head (query token matches key token, its own position pushed down).
- L1H0 is the induction head: its query is the current token, its keys the previous-token block,
  so it attends to the token after an earlier copy of the current one.
- L1H1 is a sink head: a constant query (its bias) matched by the key of position 0.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from interp import attention as att
from interp.models import load_model
from interp.random_models import gpt2_tokenizer

D_MODEL, N_HEAD, D_HEAD, N_POS = 128, 2, 64, 32
TOKEN, POSITION, PREVIOUS = slice(0, 32), 32, slice(64, 96)
POSITION_SCALE = 4.0
REPEAT = 12
CONSTRUCTED = {"previous_token": (0, 0), "duplicate_token": (0, 1), "induction": (1, 0),
               "sink": (1, 1)}


def qkv_columns(part: str, head: int, dims: slice | int) -> torch.Tensor:
    """Column indices of c_attn for `part` (q, k, v) of `head`, head dimensions `dims`."""
    offset = {"q": 0, "k": D_MODEL, "v": 2 * D_MODEL}[part] + head * D_HEAD
    dims = range(D_HEAD)[dims] if isinstance(dims, slice) else [dims]
    return torch.tensor([offset + d for d in dims])


@torch.no_grad()
def constructed_gpt2(folder):
    tokenizer = gpt2_tokenizer()
    config = GPT2Config(n_layer=2, n_head=N_HEAD, n_embd=D_MODEL, n_positions=N_POS,
                        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    for parameter in model.parameters():
        parameter.zero_()
    for layer_norm in [*(b.ln_1 for b in model.transformer.h), *(b.ln_2 for b in model.transformer.h),
                       model.transformer.ln_f]:
        layer_norm.weight.fill_(1.0)
    generator = torch.Generator().manual_seed(0)
    model.transformer.wte.weight[:, TOKEN] = torch.randn(len(tokenizer), 32, generator=generator)
    for position in range(N_POS):
        model.transformer.wpe.weight[position, POSITION + position] = POSITION_SCALE
    layer0, layer1 = (block.attn.c_attn for block in model.transformer.h)
    rows = torch.arange(32)
    # L0H0, previous token: query of position p -> head dim p - 1; key of position p -> dim p.
    for position in range(1, N_POS):
        layer0.weight[POSITION + position, qkv_columns("q", 0, position - 1)] = 2.0
    for position in range(N_POS):
        layer0.weight[POSITION + position, qkv_columns("k", 0, position)] = 1.0
    layer0.weight[rows, qkv_columns("v", 0, slice(0, 32))] = 1.0  # copies the token block ...
    model.transformer.h[0].attn.c_proj.weight[rows, torch.arange(64, 96)] = 1.0  # ... forward
    # L0H1, duplicate token: token identity on head dims 0-31, own position -8 on dims 32-63.
    layer0.weight[rows, qkv_columns("q", 1, slice(0, 32))] = 1.5
    layer0.weight[rows, qkv_columns("k", 1, slice(0, 32))] = 1.0
    for position in range(N_POS):
        layer0.weight[POSITION + position, qkv_columns("q", 1, 32 + position)] = -6.0
        layer0.weight[POSITION + position, qkv_columns("k", 1, 32 + position)] = 1.0
    # L1H0, induction: current token (query) against the previous-token block (keys).
    layer1.weight[rows, qkv_columns("q", 0, slice(0, 32))] = 2.0
    layer1.weight[torch.arange(64, 96), qkv_columns("k", 0, slice(0, 32))] = 1.0
    # L1H1, sink: a constant query (bias) against the key of position 0.
    layer1.bias[qkv_columns("q", 1, 0)] = 15.0
    layer1.weight[POSITION, qkv_columns("k", 1, 0)] = 1.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def constructed_scores(tmp_path_factory):
    model = load_model(str(constructed_gpt2(tmp_path_factory.mktemp("constructed-heads"))),
                       device="cpu")
    return att.head_scores(model, repeat_length=REPEAT, seed=1)


@pytest.mark.parametrize("kind", list(CONSTRUCTED))
def test_the_constructed_head_ranks_first_on_its_own_score(constructed_scores, kind):
    """Reference: the weights above make head CONSTRUCTED[kind] attend exactly where `kind`
    measures (previous token, earlier copy, the token after it, position 0); every other head
    is uniform or constructed for another pattern, so it must rank first, near 1."""
    ranked = att.ranked_heads(constructed_scores, kind)
    assert (ranked[0].layer, ranked[0].head) == CONSTRUCTED[kind], [h.label for h in ranked]
    assert ranked[0].score > 0.9, ranked
    assert ranked[1].score < 0.5, ranked
    found = att.find_heads(constructed_scores, kind, 0.9)
    assert [(h.layer, h.head) for h in found] == [CONSTRUCTED[kind]]



def test_the_explanation_names_each_constructed_head_and_its_kind(constructed_scores):
    """Reference: the construction above (which head is which kind); the explanation must say
    so in its text and in the facts an AI explanation is checked against."""
    from interp.explain import explain

    explanation = explain(constructed_scores)
    kinds = explanation.facts["kinds_by_head"]
    for kind, (layer, head) in CONSTRUCTED.items():
        label = att.head_label(layer, head)
        assert att.SCORE_LABELS[kind] in kinds[label], (label, kinds)
        assert explanation.facts["scores"][kind]["best"] == label
    assert "L1H0: induction" in explanation.markdown
