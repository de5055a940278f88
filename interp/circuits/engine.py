"""A GPT-2 forward pass whose every reader's input can be rebuilt edge by edge.

Because the residual stream is a sum, a receiver's input with some incoming edges ablated is
its live input minus, for each ablated sender, (live output - replacement output). This module
runs GPT-2's blocks from the model's own weights with each head's q, k and v inputs (and each
MLP's and the logits' input) kept apart, so that rewrite is one batched product per layer: a
whole batch of circuits (one keep-mask per row) costs one forward pass, and no hook is ever
attached to the shared model. With `track_inputs` the receivers' inputs are kept in the autograd
graph, so one backward pass gives every receiver's gradient (edge attribution patching).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.activations import ACT2FN

from interp.circuits.graph import EdgeGraph
from interp.patching.architecture import ATTRIBUTION, check_architecture

# Rows of a rewritten pass per chunk: the sender outputs and their differences are each rows x
# pos x senders x d_model floats, 0.12 GB at 16 rows of GPT-2 small's 157 senders and 15
# tokens. A third of the earlier 90M took the same time for 44 rows (14.5-17.8 s vs 17.6-17.8 s
# on 2 busy cores) and cut the faithfulness curve's peak on GPT-2 small by a quarter.
SENDER_FLOATS_PER_CHUNK = 30_000_000


@dataclass(frozen=True)
class Gpt2Weights:
    """GPT-2's weights split per head ([layer][head, d_model, d_head] and so on), detached."""

    wte: torch.Tensor
    wpe: torch.Tensor
    layers: tuple[dict, ...]
    ln_f: tuple[torch.Tensor, torch.Tensor]
    w_u: torch.Tensor
    b_u: torch.Tensor | None
    eps: float
    attention_scale: tuple[float, ...]
    activations: tuple
    graph_shape: tuple[int, int]

    def graph(self, n_pos: int) -> EdgeGraph:
        return EdgeGraph(*self.graph_shape, n_pos)


def gpt2_weights(model) -> Gpt2Weights:
    """The weights of `model`'s Hugging Face GPT-2, per head, on the model's device."""
    check_architecture(model, ATTRIBUTION)
    hf = model.bridge.original_model
    config = hf.config
    n_heads, d_model = config.n_head, config.n_embd
    d_head = d_model // n_heads
    layers, scales, activations = [], [], []
    for index, block in enumerate(hf.transformer.h):
        qkv_w, qkv_b = block.attn.c_attn.weight.detach(), block.attn.c_attn.bias.detach()

        def heads(w, part):
            return w[:, part * d_model:(part + 1) * d_model].reshape(d_model, n_heads, d_head).transpose(0, 1)

        layers.append(dict(
            ln1=(block.ln_1.weight.detach(), block.ln_1.bias.detach()),
            w_q=heads(qkv_w, 0), w_k=heads(qkv_w, 1), w_v=heads(qkv_w, 2),
            b_q=qkv_b[:d_model].reshape(n_heads, d_head),
            b_k=qkv_b[d_model:2 * d_model].reshape(n_heads, d_head),
            b_v=qkv_b[2 * d_model:].reshape(n_heads, d_head),
            w_o=block.attn.c_proj.weight.detach().reshape(n_heads, d_head, d_model),
            b_o=block.attn.c_proj.bias.detach(),
            ln2=(block.ln_2.weight.detach(), block.ln_2.bias.detach()),
            w_in=block.mlp.c_fc.weight.detach(), b_in=block.mlp.c_fc.bias.detach(),
            w_out=block.mlp.c_proj.weight.detach(), b_out=block.mlp.c_proj.bias.detach()))
        scale = 1.0 / math.sqrt(d_head) if config.scale_attn_weights else 1.0
        if getattr(config, "scale_attn_by_inverse_layer_idx", False):
            scale /= index + 1
        scales.append(scale)
        activations.append(ACT2FN[config.activation_function])
    bias = getattr(hf.lm_head, "bias", None)
    return Gpt2Weights(
        wte=hf.transformer.wte.weight.detach(), wpe=hf.transformer.wpe.weight.detach(),
        layers=tuple(layers), ln_f=(hf.transformer.ln_f.weight.detach(),
                                    hf.transformer.ln_f.bias.detach()),
        w_u=hf.lm_head.weight.detach().T, b_u=None if bias is None else bias.detach(),
        eps=config.layer_norm_epsilon, attention_scale=tuple(scales),
        activations=tuple(activations), graph_shape=(config.n_layer, n_heads))


@dataclass(frozen=True)
class Rewrite:
    """Which edges each row ablates, and what the ablated senders' outputs become.

    `ablated` [rows or 1, sender, receiver, pos] bool; `replacement` [rows or 1, pos, sender,
    d_model]: each sender's output that an ablated edge carries instead of the live one.
    """

    ablated: torch.Tensor
    replacement: torch.Tensor


@dataclass
class PassOutput:
    """A pass's logits at the last position [rows, d_vocab], every sender's output
    [rows, pos, sender, d_model], and, when tracked, the receivers' inputs by layer."""

    last_logits: torch.Tensor
    sender_outputs: torch.Tensor
    attention_inputs: list
    mlp_inputs: list
    final_input: torch.Tensor | None


def layer_norm(x: torch.Tensor, weight_bias, eps: float) -> torch.Tensor:
    """LayerNorm of `x` with the (weight, bias) pair given."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight_bias[0], weight_bias[1], eps)


def correction(rewrite: Rewrite | None, outputs: torch.Tensor, n_senders: int,
               receivers) -> torch.Tensor | None:
    """Sum over ablated senders of (live - replacement), per receiver: [rows, pos, recv, d]."""
    if rewrite is None:
        return None
    differences = outputs[:, :, :n_senders] - rewrite.replacement[:, :, :n_senders]
    mask = rewrite.ablated[:, :n_senders, receivers].to(differences.dtype)
    if mask.ndim == 3:
        mask = mask[:, :, None]
    return torch.einsum("bpsd,bsrp->bprd", differences, mask)


def forward(weights: Gpt2Weights, token_embeds: torch.Tensor, rewrite: Rewrite | None = None,
            track_inputs: bool = False) -> PassOutput:
    """GPT-2 on `token_embeds` [rows, pos, d_model] (the embedding sender's output), with the
    edges `rewrite` names ablated; returns the last position's logits and what `PassOutput` holds.
    """
    rows, n_pos, d_model = token_embeds.shape
    n_layers, n_heads = weights.graph_shape
    graph = weights.graph(n_pos)
    eps = weights.eps
    outputs = token_embeds.new_zeros((rows, n_pos, graph.n_senders, d_model))
    outputs[:, :, 0] = token_embeds.detach()
    resid = token_embeds + weights.wpe[:n_pos]
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=token_embeds.device).tril()
    attention_inputs, mlp_inputs = [], []

    for layer, w in enumerate(weights.layers):
        n_before = graph.senders_before(layer)
        fix = correction(rewrite, outputs, n_before, graph.attention_receivers(layer))
        reader_inputs = resid[:, :, None, :].expand(rows, n_pos, 3 * n_heads, d_model)
        if fix is not None:
            reader_inputs = reader_inputs - fix
        elif track_inputs:
            reader_inputs = reader_inputs.clone()
        if track_inputs:  # kept only for gradients: 12 of them are ~1 GB at a full chunk
            attention_inputs.append(reader_inputs)
        normed = layer_norm(reader_inputs, w["ln1"], eps)
        q = torch.einsum("bphd,hde->bphe", normed[:, :, :n_heads], w["w_q"]) + w["b_q"]
        k = torch.einsum("bphd,hde->bphe", normed[:, :, n_heads:2 * n_heads], w["w_k"]) + w["b_k"]
        v = torch.einsum("bphd,hde->bphe", normed[:, :, 2 * n_heads:], w["w_v"]) + w["b_v"]
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * weights.attention_scale[layer]
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        head_outputs = torch.einsum("bphe,hed->bphd", z, w["w_o"])
        outputs[:, :, n_before:n_before + n_heads] = head_outputs.detach()
        resid = resid + head_outputs.sum(2) + w["b_o"]

        fix = correction(rewrite, outputs, n_before + n_heads, graph.mlp_receiver(layer))
        mlp_input = resid - fix[:, :, 0] if fix is not None else (
            resid.clone() if track_inputs else resid)
        if track_inputs:
            mlp_inputs.append(mlp_input)
        hidden = weights.activations[layer](layer_norm(mlp_input, w["ln2"], eps) @ w["w_in"]
                                            + w["b_in"])
        mlp_output = hidden @ w["w_out"] + w["b_out"]
        outputs[:, :, n_before + n_heads] = mlp_output.detach()
        resid = resid + mlp_output

    fix = correction(rewrite, outputs, graph.n_senders, graph.logits_receiver)
    final_input = resid - fix[:, :, 0] if fix is not None else (
        resid.clone() if track_inputs else resid)
    last = layer_norm(final_input[:, -1], weights.ln_f, eps)
    logits = last @ weights.w_u
    if weights.b_u is not None:
        logits = logits + weights.b_u
    return PassOutput(logits, outputs, attention_inputs, mlp_inputs,
                      final_input if track_inputs else None)


def rows_per_chunk(n_pos: int, n_senders: int, d_model: int) -> int:
    """How many pairs fit one chunk of sender outputs within the memory budget."""
    return max(1, SENDER_FLOATS_PER_CHUNK // (n_pos * n_senders * d_model))


@torch.no_grad()
def rewritten_logits(weights: Gpt2Weights, token_embeds: torch.Tensor, ablated: torch.Tensor,
                     replacement: torch.Tensor, check=None) -> torch.Tensor:
    """Last-position logits [rows, d_vocab] of many rewritten passes, in chunks of rows.

    `token_embeds`, `ablated` and `replacement` have one row per pass, 1 (shared by all), or
    a cycle of n rows that pass r reads at r mod n (e.g. one per pair, for passes that run
    every pair under many masks: repeating them would copy the sender outputs per mask);
    `check()` runs between chunks (progress, cancellation).
    """
    rows = max(token_embeds.shape[0], ablated.shape[0], replacement.shape[0])
    for tensor in (token_embeds, ablated, replacement):
        if rows % tensor.shape[0]:
            raise ValueError(f"{tensor.shape[0]} rows do not cycle evenly over {rows} passes")
    n_pos, d_model = token_embeds.shape[1:]
    step = rows_per_chunk(n_pos, ablated.shape[1], d_model)
    pieces = []
    for start in range(0, rows, step):
        stop = min(rows, start + step)

        def part(t: torch.Tensor, start: int = start, stop: int = stop) -> torch.Tensor:
            if t.shape[0] == 1:
                return t
            if t.shape[0] == rows:
                return t[start:stop]
            return t[torch.arange(start, stop, device=t.device) % t.shape[0]]

        embeds = part(token_embeds).expand(stop - start, -1, -1)
        pieces.append(forward(weights, embeds, Rewrite(part(ablated), part(replacement))).last_logits)
        if check is not None:
            check(stop, rows)
    return torch.cat(pieces)
