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

import re
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
    return project_out(weights, attend(weights, query, key, value)[1])


def attend(weights: Gpt2BlockWeights, query: torch.Tensor, key: torch.Tensor,
           value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pattern [rows, head, queries, keys], z [rows, head, queries, d_head]) of queries that
    are the last positions of the keys', causally masked inside the scores' product."""
    rows, n_heads, n_queries, d_head = query.shape
    n_keys = key.shape[2]
    mask = causal_mask(n_queries, n_keys, query)
    scores = torch.baddbmm(mask, query.reshape(-1, n_queries, d_head),
                           key.reshape(-1, n_keys, d_head).transpose(1, 2), alpha=weights.scale)
    pattern = torch.softmax(scores, dim=-1)
    z = torch.bmm(pattern, value.reshape(-1, n_keys, d_head)).view(rows, n_heads, n_queries, d_head)
    return pattern.view(rows, n_heads, n_queries, n_keys), z


def project_out(weights: Gpt2BlockWeights, z: torch.Tensor) -> torch.Tensor:
    """The attention output [rows, queries, d] of every head's z [rows, head, queries, d_head]
    through W_O, with its bias."""
    rows, n_heads, n_queries, d_head = z.shape
    return linear(z.transpose(1, 2).reshape(rows, n_queries, n_heads * d_head), weights.w_o,
                  weights.b_o)


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


# Where each activation site sits in a block, as `site_activation` computes it.
PLAIN_SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")


def embeddings(model, token_ids: torch.Tensor) -> torch.Tensor:
    """resid_pre of block 0 [rows, pos, d]: token plus position embeddings, as Hugging Face's
    GPT-2 adds them (dropout is off in evaluation). The tables are read directly, not called as
    modules, so a hook another analysis put on the embedding never fires here."""
    transformer = model.bridge.original_model.transformer
    positions = torch.arange(token_ids.shape[1], device=token_ids.device)
    return F.embedding(token_ids, transformer.wte.weight) + transformer.wpe.weight[positions]


def site_activation(blocks: tuple[Gpt2BlockWeights, ...], hidden: torch.Tensor, site: str,
                    layer: int) -> torch.Tensor:
    """The activation at `site` (one of `PLAIN_SITES`) of block `layer`, from the residual
    stream `hidden` [rows, pos, d] entering block 0; blocks after `layer` never run."""
    if site not in PLAIN_SITES:
        raise ValueError(f"no plain route to the site {site!r}; valid: {', '.join(PLAIN_SITES)}")
    for index in range(layer):
        hidden = block(blocks[index], hidden, None, index)
    if site == "resid_pre":
        return hidden
    weights = blocks[layer]
    attention_out = attention(weights, layer_norm(weights.ln_1, hidden), None, layer)
    if site == "attn_out":
        return attention_out
    mid = attention_out.add_(hidden)
    if site == "resid_mid":
        return mid
    mlp_out = mlp(weights, layer_norm(weights.ln_2, mid))
    return mlp_out if site == "mlp_out" else mlp_out.add_(mid)


# The bridge's hook names (after "blocks.{layer}.") that `cached_forward` computes.
CACHED_HOOKS = ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
                "hook_mlp_out", "hook_resid_post")
BLOCK_HOOK = re.compile(r"blocks\.(?P<layer>\d+)\.(?P<hook>.+)")


def can_cache(names, n_layers: int) -> bool:
    """Whether `cached_forward` computes every hook in `names`."""
    for name in names:
        match = BLOCK_HOOK.fullmatch(name)
        if match is None or match["hook"] not in CACHED_HOOKS or int(match["layer"]) >= n_layers:
            return False
    return True


def cached_forward(model, blocks: tuple[Gpt2BlockWeights, ...], token_ids: torch.Tensor,
                   names) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One unhooked forward pass of `token_ids` [rows, pos]: (the last position's logits
    [rows, d_vocab], {hook name: activation} for `names`), each activation in the shape the
    bridge's hook gives it (q, k, v and z [rows, pos, head, d_head]; the pattern [rows, head,
    query, key])."""
    wanted = set(names)
    cache: dict[str, torch.Tensor] = {}
    hidden = embeddings(model, token_ids)
    for layer, weights in enumerate(blocks):
        def keep(hook: str, value: torch.Tensor, layer: int = layer) -> None:
            name = f"blocks.{layer}.{hook}"
            if name in wanted:
                cache[name] = value

        keep("hook_resid_pre", hidden)
        d_model = hidden.shape[-1]
        qkv = linear(layer_norm(weights.ln_1, hidden), weights.w_qkv, weights.b_qkv)
        query, key, value = (heads(part, weights.n_heads) for part in qkv.split(d_model, dim=2))
        for hook, part in (("attn.hook_q", query), ("attn.hook_k", key), ("attn.hook_v", value)):
            keep(hook, part.transpose(1, 2))
        pattern, z = attend(weights, query, key, value)
        keep("attn.hook_pattern", pattern)
        keep("attn.hook_z", z.transpose(1, 2))
        attention_out = project_out(weights, z)
        keep("hook_attn_out", attention_out)
        mid = attention_out + hidden
        keep("hook_resid_mid", mid)
        mlp_out = mlp(weights, layer_norm(weights.ln_2, mid))
        keep("hook_mlp_out", mlp_out)
        hidden = mlp_out + mid
        keep("hook_resid_post", hidden)
    hf = model.bridge.original_model
    last = layer_norm(hf.transformer.ln_f, hidden[:, -1])
    return F.linear(last, hf.lm_head.weight, getattr(hf.lm_head, "bias", None)), cache
