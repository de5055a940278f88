"""GPT-2's block as plain tensor operations on its Hugging Face weights, for unhooked passes.

The staircase engine runs many blocks with no hook to fire. Through the bridge each block costs
more than its matrix products: the layer norms are spelled out in eight elementwise operations
(so that `hook_scale` can see the scale), q, k and v are three products, the causal mask is built
and filled per call, and the attention output is copied back through a transpose. Here the same
arithmetic is one fused layer norm, one q/k/v product, one batched product that also adds the
mask, an in-place softmax and an in-place GELU: on the all-heads sweep of GPT-2 small the work
outside the matrix products was 16% of the time (profiled: GELU 5%, copies and concatenation 6%,
layer norms 2.5%). `interp.patching.self_check` compares the engine, this block included, with
plain hooked runs of the model itself, so a block this code does not match is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from interp.activations import tanh_gelu_, uses_tanh_gelu


@dataclass(frozen=True)
class Gpt2BlockWeights:
    """One block's weights as Hugging Face's GPT-2 holds them (Conv1D: [in, out])."""

    ln_1: torch.nn.LayerNorm
    w_qkv: torch.Tensor
    b_qkv: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    ln_2: torch.nn.LayerNorm
    w_in: torch.Tensor
    b_in: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor
    n_heads: int
    scale: float


def plain_gpt2_blocks(model) -> tuple[Gpt2BlockWeights, ...] | None:
    """The weights of every block of `model` when it is a Hugging Face GPT-2 with the tanh GELU
    and float32 attention as configured by default; None otherwise (the bridge's blocks are then
    used)."""
    hf = getattr(model.bridge, "original_model", None)
    config = getattr(hf, "config", None)
    if (hf is None or config is None or getattr(config, "model_type", None) != "gpt2"
            or not uses_tanh_gelu(model) or getattr(config, "reorder_and_upcast_attn", False)):
        return None
    d_head = config.n_embd // config.n_head
    blocks = []
    for index, block in enumerate(hf.transformer.h):
        scale = d_head ** -0.5 if config.scale_attn_weights else 1.0
        if getattr(config, "scale_attn_by_inverse_layer_idx", False):
            scale /= index + 1
        attention, mlp = block.attn, block.mlp
        blocks.append(Gpt2BlockWeights(
            ln_1=block.ln_1, w_qkv=attention.c_attn.weight, b_qkv=attention.c_attn.bias,
            w_o=attention.c_proj.weight, b_o=attention.c_proj.bias, ln_2=block.ln_2,
            w_in=mlp.c_fc.weight, b_in=mlp.c_fc.bias, w_out=mlp.c_proj.weight,
            b_out=mlp.c_proj.bias, n_heads=config.n_head, scale=scale))
    return tuple(blocks)


def layer_norm(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm` applied to `x` as one fused kernel (the module's own weight, bias and eps)."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight + bias over the last axis, as one product (Conv1D's arithmetic)."""
    rows = x.reshape(-1, x.shape[-1])
    return torch.addmm(bias, rows, weight).view(*x.shape[:-1], weight.shape[1])


def heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[rows, pos, head * d_head] -> [rows, head, pos, d_head] (a view)."""
    rows, positions, width = x.shape
    return x.view(rows, positions, n_heads, width // n_heads).transpose(1, 2)


def causal_mask(n_queries: int, n_keys: int, like: torch.Tensor) -> torch.Tensor:
    """Additive mask [n_queries, n_keys] for queries that are the last `n_queries` positions."""
    allowed = torch.ones(n_queries, n_keys, dtype=torch.bool, device=like.device).tril(
        n_keys - n_queries)
    return torch.zeros(n_queries, n_keys, dtype=like.dtype, device=like.device).masked_fill_(
        ~allowed, float("-inf"))


def attention(weights: Gpt2BlockWeights, normalized: torch.Tensor, cache, layer: int,
              query_rows: slice | None = None) -> torch.Tensor:
    """The attention output [rows, queries, d] of `normalized` [rows, pos, d]; `cache` (the
    engine's keys and values of earlier positions, or None) supplies positions before these;
    `query_rows` keeps only some positions as queries (the last block's last one)."""
    d_model = normalized.shape[-1]
    if query_rows is None:
        qkv = linear(normalized, weights.w_qkv, weights.b_qkv)
        query, key, value = (heads(part, weights.n_heads) for part in qkv.split(d_model, dim=2))
    else:  # queries at some positions only: no product for the others' queries
        query = heads(linear(normalized[:, query_rows], weights.w_qkv[:, :d_model],
                             weights.b_qkv[:d_model]), weights.n_heads)
        key_value = linear(normalized, weights.w_qkv[:, d_model:], weights.b_qkv[d_model:])
        key, value = (heads(part, weights.n_heads) for part in key_value.split(d_model, dim=2))
    if cache is not None:
        key, value = cache.update(key, value, layer)
    rows, n_heads, n_queries, d_head = query.shape
    n_keys = key.shape[2]
    mask = causal_mask(n_queries, n_keys, query)
    scores = torch.baddbmm(mask, query.reshape(-1, n_queries, d_head),
                           key.reshape(-1, n_keys, d_head).transpose(1, 2), alpha=weights.scale)
    pattern = torch.softmax(scores, dim=-1)
    z = torch.bmm(pattern, value.reshape(-1, n_keys, d_head)).view(rows, n_heads, n_queries, d_head)
    return linear(z.transpose(1, 2).reshape(rows, n_queries, d_model), weights.w_o, weights.b_o)


def mlp(weights: Gpt2BlockWeights, x: torch.Tensor) -> torch.Tensor:
    """c_proj(gelu_tanh(c_fc(ln_2 input))): GELU in place on the product's fresh output
    (`interp.activations.tanh_gelu_`)."""
    hidden = linear(x, weights.w_in, weights.b_in)
    return linear(tanh_gelu_(hidden), weights.w_out, weights.b_out)


def block(weights: Gpt2BlockWeights, hidden: torch.Tensor, cache, layer: int,
          last_position_only: bool = False) -> torch.Tensor:
    """resid_post of one block: mid = resid_pre + attn(ln_1(resid_pre)), post = mid +
    mlp(ln_2(mid)); with `last_position_only`, only the last position's [rows, 1, d]."""
    query_rows = slice(-1, None) if last_position_only else None
    mid = attention(weights, layer_norm(weights.ln_1, hidden), cache, layer, query_rows)
    mid += hidden[:, -1:] if last_position_only else hidden
    return after_mlp(weights, mid)


def after_mlp(weights: Gpt2BlockWeights, mid: torch.Tensor) -> torch.Tensor:
    """resid_post = resid_mid + mlp(ln_2(resid_mid)) (also where a run joins mid-block)."""
    return mlp(weights, layer_norm(weights.ln_2, mid)).add_(mid)
