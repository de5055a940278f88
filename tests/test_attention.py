"""Attention patterns, value-weighted norms, rollout, flow and head scores against independent
references: Hugging Face's own `output_attentions` (eager attention), the model's weights read
straight from the Hugging Face module, and hand calculations."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from interp import attention as att
from interp import export
from interp.errors import InputTooLongError, InvalidOptionError
from interp.models import DEMO_MODEL_DIR, load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


def hf_reference(folder):
    return GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()


def hf_attentions(hf, token_ids) -> torch.Tensor:
    """[layer, head, q, k] from Hugging Face's eager attention."""
    with torch.no_grad():
        out = hf(torch.tensor([list(token_ids)]), output_attentions=True)
    return torch.stack([a[0] for a in out.attentions])


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_patterns_equal_hugging_face_eager_attention(which, tiny_model, tiny_model_dir, demo_model):
    """Reference: `GPT2LMHeadModel(attn_implementation="eager")(..., output_attentions=True)`
    on the same folder and token ids; invariant: every row is a probability distribution."""
    model, folder = (tiny_model, tiny_model_dir) if which == "tiny" else (demo_model, DEMO_MODEL_DIR)
    result = att.attention_patterns(model, PROMPT)
    expected = hf_attentions(hf_reference(folder), result.token_ids)
    assert result.patterns.shape == expected.shape
    assert result.patterns.shape[:2] == (model.info.n_layers, model.info.n_heads)
    assert torch.allclose(result.patterns, expected, atol=1e-5, rtol=0)
    assert torch.allclose(result.patterns.sum(-1), torch.ones(result.patterns.shape[:-1]), atol=1e-5)
    assert float(result.patterns.triu(1).abs().max()) == 0.0  # no look-ahead
    assert result.tokens[0] == "<|endoftext|>" and len(result.tokens) == result.n_tokens


def test_value_weighted_norms_equal_the_weights_times_what_each_head_moves(tiny_model, tiny_model_dir):
    """Reference: Kobayashi et al.'s ||alpha_ij f(x_j)||, f(x) = (LN1(x) W_V + b_V) W_O, built from
    the Hugging Face module's own c_attn / c_proj weights and hidden states."""
    result = att.attention_patterns(tiny_model, PROMPT, value_norms=True)
    hf = hf_reference(tiny_model_dir)
    ids = torch.tensor([list(result.token_ids)])
    with torch.no_grad():
        out = hf(ids, output_attentions=True, output_hidden_states=True)
        d, n_heads = hf.config.n_embd, hf.config.n_head
        d_head = d // n_heads
        for layer, block in enumerate(hf.transformer.h):
            values = block.attn.c_attn(block.ln_1(out.hidden_states[layer][0]))[:, 2 * d:]
            for head in range(n_heads):
                columns = slice(head * d_head, (head + 1) * d_head)
                moved = values[:, columns] @ block.attn.c_proj.weight[columns, :]
                expected = out.attentions[layer][0, head] * moved.norm(dim=-1)[None, :]
                assert torch.allclose(result.value_norms[layer, head], expected, atol=1e-5), (layer, head)


def handmade_result(layers: list[list[list[list[float]]]]) -> att.AttentionResult:
    patterns = torch.tensor(layers, dtype=torch.float32)
    n = patterns.shape[-1]
    return att.AttentionResult("hand", "hand", "abc", tuple("abc"[:n]), tuple(range(n)), patterns)


# Two layers, two heads, three tokens (rows: queries).
LAYER0 = [[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]
LAYER1_HEAD_A = [[1, 0, 0], [1, 0, 0], [0.2, 0.8, 0.0]]
LAYER1_HEAD_B = [[1, 0, 0], [1, 0, 0], [0.0, 0.4, 0.6]]
THREE_TOKENS = [[LAYER0, LAYER0], [LAYER1_HEAD_A, LAYER1_HEAD_B]]


def test_rollout_equals_a_hand_computed_three_token_example():
    """Hand calculation: Â0 = 0.5 A0 + 0.5 I = [[1,0,0],[.25,.75,0],[.1,.15,.75]];
    layer 1's head mean has row 2 = [.1,.6,.3], so Â1 = [[1,0,0],[.5,.5,0],[.05,.3,.65]];
    rollout = Â1 Â0 = [[1,0,0],[.625,.375,0],[.19,.3225,.4875]]."""
    rollout = att.attention_rollout(handmade_result(THREE_TOKENS)).rollout
    expected_first = torch.tensor([[1, 0, 0], [0.25, 0.75, 0], [0.1, 0.15, 0.75]])
    expected_last = torch.tensor([[1, 0, 0], [0.625, 0.375, 0], [0.19, 0.3225, 0.4875]])
    assert torch.allclose(rollout[0], expected_first, atol=1e-6)
    assert torch.allclose(rollout[1], expected_last, atol=1e-6)


def test_rollout_renormalizes_rows_that_do_not_sum_to_one():
    """Hand calculation: a row [0.5, 0, 0] (value-weighted norms need not sum to 1) plus the
    identity at 0.5 gives [0.25, 0.5, 0] / 0.75 = [1/3, 2/3, 0]."""
    layer = [[1, 0, 0], [0.5, 0, 0], [0, 0, 1]]
    rollout = att.attention_rollout(handmade_result([[layer]])).rollout
    assert torch.allclose(rollout[0, 1], torch.tensor([1 / 3, 2 / 3, 0]), atol=1e-6)


def test_attention_flow_equals_the_hand_computed_max_flow():
    """Hand calculation: with two layers, the paths input k -> middle j -> output q use
    disjoint edges, so max-flow = sum_j min(Â0[j, k], Â1[q, j]); for q = 2, k = 0:
    min(1, .05) + min(.25, .3) + min(.1, .65) = 0.4. With one layer it is Â0[q, k] itself."""
    flow = att.attention_flow(handmade_result(THREE_TOKENS)).flow
    assert flow[2, 0].item() == pytest.approx(0.4, abs=1e-6)
    # q = 1, k = 0: min(1, .5) + min(.25, .5) = 0.75; q = 2, k = 2: min(.75, .65) = 0.65
    assert flow[1, 0].item() == pytest.approx(0.75, abs=1e-6)
    assert flow[2, 2].item() == pytest.approx(0.65, abs=1e-6)
    one_layer = att.attention_flow(handmade_result([[LAYER0]])).flow
    assert torch.allclose(one_layer, torch.tensor([[1, 0, 0], [0.25, 0.75, 0], [0.1, 0.15, 0.75]]),
                          atol=1e-6)


def test_attention_flow_refuses_long_inputs_with_a_typed_error():
    """Invariant: the cap is a typed error naming the limit, never a silent truncation."""
    n = att.MAX_FLOW_TOKENS + 1
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    result = att.AttentionResult("m", "m", "p", tuple("x" * n), tuple(range(n)),
                                 uniform[None, None])
    with pytest.raises(InputTooLongError, match=str(att.MAX_FLOW_TOKENS)):
        att.attention_flow(result)


def test_head_scores_follow_their_definitions_on_hugging_face_attention(tiny_model, tiny_model_dir):
    """Reference: each score written out as a loop over Hugging Face's eager attention on the
    library's repeated sequence (BOS, n tokens, the same n tokens)."""
    n = 10
    scores = att.head_scores(tiny_model, repeat_length=n, seed=3)
    ids = scores.sequence_ids
    assert len(ids) == 2 * n + 1 and ids[1:n + 1] == ids[n + 1:] and len(set(ids[1:n + 1])) == n
    assert ids[0] == tiny_model.to_tokens("")[0, 0].item() and ids[0] not in ids[1:]
    pattern = hf_attentions(hf_reference(tiny_model_dir), ids).numpy()
    for layer in range(pattern.shape[0]):
        for head in range(pattern.shape[1]):
            a = pattern[layer, head]
            expected = {
                "previous_token": np.mean([a[q, q - 1] for q in range(1, 2 * n + 1)]),
                "duplicate_token": np.mean([a[q, q - n] for q in range(n + 1, 2 * n + 1)]),
                "induction": np.mean([a[q, q - n + 1] for q in range(n + 1, 2 * n + 1)]),
                "sink": np.mean([a[q, 0] for q in range(1, 2 * n + 1)]),
                "entropy": np.mean([-sum(p * math.log(p) for p in a[q, :q + 1] if p > 0)
                                    for q in range(1, 2 * n + 1)]),
            }
            for kind, value in expected.items():
                assert scores.of(kind)[layer, head].item() == pytest.approx(value, abs=1e-5), (kind, layer, head)
    assert att.head_scores(tiny_model, repeat_length=n, seed=3).sequence_ids == ids  # seeded
    assert att.head_scores(tiny_model, repeat_length=n, seed=4).sequence_ids != ids


def test_head_scores_read_prompt_scores_from_the_prompt(tiny_model):
    """Invariant: with the prompt's result, previous-token, sink and entropy equal the same
    formulas on the prompt's patterns (computed by hand here), and say where they came from."""
    result = att.attention_patterns(tiny_model, PROMPT)
    scores = att.head_scores(tiny_model, repeat_length=6, prompt_result=result)
    p = result.patterns
    expected_sink = torch.stack([p[..., q, 0] for q in range(1, p.shape[-1])], -1).mean(-1)
    assert torch.allclose(scores.of("sink"), expected_sink, atol=1e-6)
    assert scores.sources["sink"] == "the prompt" and "random" in scores.sources["induction"]


def test_repeat_length_outside_the_context_is_refused(tiny_model):
    """Invariant: the tiny model's context is 64, so 31 tokens twice plus BOS fit and 32 don't."""
    att.repeated_random_tokens(tiny_model, 31, 0)
    with pytest.raises(InvalidOptionError, match="from 2 to 31"):
        att.head_scores(tiny_model, repeat_length=32)


def handmade_scores(values: list[list[float]], kind: str) -> att.HeadScores:
    matrix = torch.tensor(values)
    scores = {k: torch.zeros_like(matrix) for k in att.SCORE_KINDS} | {kind: matrix}
    return att.HeadScores("m", "m", scores, dict.fromkeys(att.SCORE_KINDS, "hand"), 2, 0, ())


def test_find_heads_keeps_passing_heads_most_notable_first():
    """Hand example: scores [[0.1, 0.7], [0.5, 0.2]] at threshold 0.5 -> L0H1, L1H0; for entropy
    (low is notable) at threshold 0.25 -> L0H0 (0.1), L1H1 (0.2)."""
    found = att.find_heads(handmade_scores([[0.1, 0.7], [0.5, 0.2]], "induction"), "induction", 0.5)
    assert [(h.label, h.score) for h in found] == [("L0H1", pytest.approx(0.7)), ("L1H0", 0.5)]
    low = att.find_heads(handmade_scores([[0.1, 0.7], [0.5, 0.2]], "entropy"), "entropy", 0.25)
    assert [h.label for h in low] == ["L0H0", "L1H1"]
    with pytest.raises(InvalidOptionError, match="previous_token"):
        att.find_heads(handmade_scores([[0.1]], "sink"), "sinks", 0.5)


def test_difference_needs_aligned_tokens_and_names_differing_positions():
    """Hand example: the same three positions with one token changed give B - A cell by cell;
    a different length is refused with the reason."""
    a = handmade_result([[LAYER0]])
    b = att.AttentionResult("m", "m", "abd", ("a", "b", "d"), (0, 1, 3),
                            torch.tensor([[LAYER1_HEAD_A]], dtype=torch.float32))
    diff = att.attention_difference(a, b, 0, 0)
    assert torch.allclose(diff.difference[2], torch.tensor([0.0, 0.5, -0.5]), atol=1e-6)
    assert diff.differing_positions == (2,)
    short = handmade_result([[[[1.0]]]])
    assert "align" in att.alignment_problem(a, short, 0, 0)
    with pytest.raises(InvalidOptionError):
        att.attention_difference(a, short, 0, 0)


def test_exports_keep_every_number(tiny_model):
    """Invariant: the .npz and JSON exports read back to the result's own tensors; the CSV has
    one row per head with every score."""
    result = att.attention_patterns(tiny_model, PROMPT, value_norms=True)
    loaded = np.load(io.BytesIO(export.to_npz(result)))
    assert np.array_equal(loaded["patterns"], result.patterns.numpy())
    assert np.array_equal(loaded["value_norms"], result.value_norms.numpy())
    assert json.loads(str(loaded["metadata"]))["tokens"] == list(result.tokens)
    payload = json.loads(export.to_json(result))
    assert np.allclose(np.array(payload["patterns"]), result.patterns.numpy())
    scores = att.head_scores(tiny_model, repeat_length=5)
    rows = export.to_csv(scores).decode().strip().splitlines()
    assert rows[0].split(",") == list(att.TABLE_HEADER)
    assert len(rows) == 1 + tiny_model.info.n_layers * tiny_model.info.n_heads
    first = rows[1].split(",")
    assert float(first[3]) == pytest.approx(scores.of("previous_token")[0, 0].item(), abs=1e-6)


def test_attention_flow_equals_networkx_max_flow_on_random_patterns():
    """Peer: networkx's maximum_flow_value on the same layered graph (edge (l, k) -> (l+1, q)
    with capacity 0.5 mean-head attention + 0.5 identity, rows renormalized), built here."""
    import networkx as nx

    generator = torch.Generator().manual_seed(0)
    n, layers = 6, 3
    raw = torch.rand(layers, 2, n, n, generator=generator).tril()
    patterns = raw / raw.sum(-1, keepdim=True)
    result = att.AttentionResult("m", "m", "p", tuple("abcdef"), tuple(range(n)), patterns)
    flow = att.attention_flow(result).flow
    graph = nx.DiGraph()
    for layer in range(layers):
        augmented = 0.5 * patterns[layer].double().mean(0) + 0.5 * torch.eye(n, dtype=torch.float64)
        augmented = augmented / augmented.sum(-1, keepdim=True)
        for q in range(n):
            for k in range(q + 1):
                graph.add_edge((layer, k), (layer + 1, q), capacity=float(augmented[q, k]))
    for q in range(n):
        for k in range(q + 1):
            expected = nx.maximum_flow_value(graph, (0, k), (layers, q))
            assert flow[q, k].item() == pytest.approx(expected, abs=1e-6), (q, k)


def test_the_grid_downsamples_long_inputs_by_block_means():
    """Hand calculation: [[1,2,3],[4,5,6],[7,8,9]] capped at 2 cells a side takes 2 x 2 blocks:
    (1+2+4+5)/4 = 3, (3+6)/2 = 4.5, (7+8)/2 = 7.5, 9 (edge blocks average the cells they hold)."""
    from interp.figures.attention import downsample

    small, block = downsample(torch.arange(1.0, 10.0).reshape(3, 3), 2)
    assert block == 2
    assert np.allclose(small, [[3, 4.5], [7.5, 9]])
    same, one = downsample(torch.ones(2, 2, 3, 3), 3)
    assert one == 1 and same.shape == (2, 2, 3, 3)
