"""A GPT-2 forward pass whose every reader's input can be rebuilt edge by edge.

Because the residual stream is a sum, a receiver's input with some incoming edges ablated is
its live input minus, for each ablated sender, (live output - replacement output). This module
runs GPT-2's blocks from the model's own weights with each head's q, k and v inputs (and each
MLP's and the logits' input) kept apart, so that rewrite is one batched product per layer: a
whole batch of circuits (one keep-mask per row) costs one forward pass, and no hook is ever
attached to the shared model. With `track_inputs` the receivers' inputs are kept in the autograd
graph, so one backward pass gives every receiver's gradient (edge attribution patching). Passes
run in chunks of rows sized by bytes (`CHUNK_BYTES`), so their working memory is the same on
every model and number of prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers.activations import ACT2FN

from interp.circuits.graph import EdgeGraph
from interp.patching.architecture import ATTRIBUTION, check_architecture

# Working memory of one chunk of a pass, in bytes (rewritten passes and gradient passes alike),
# as the per-row estimates below count it. Streamlit Community Cloud gives 2.7 GB; the runtime,
# GPT-2 small and the toxicity classifier hold about 1.6 GB of it and the deploy target is
# 1.8 GB, so an analysis may add about 250 MB. Measured on GPT-2 small (15 tokens: 6 rows per
# rewritten chunk, 4 per gradient chunk), allocator slack and the backward pass's temporaries
# put a chunk's real peak near 180 MB, and each Circuits stage stayed within 250 MB above what
# is held; 160 MB ran EAP-IG ~15 % faster (one pair's 5 steps per chunk) but peaked 285 MB above.
CHUNK_BYTES = 128 * 2**20


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

    `ablated` [rows or 1, sender, receiver, pos] bool; `replacement` [n, pos, sender, d_model]:
    each sender's output that an ablated edge carries instead of the live one, where row r of
    the pass reads `replacement[replacement_rows[r]]` (or row r itself, or the one row when n
    is 1, without `replacement_rows`), so passes that share replacements never copy them.
    """

    ablated: torch.Tensor
    replacement: torch.Tensor
    replacement_rows: torch.Tensor | None = None

    def replacements(self, senders: slice | torch.Tensor) -> torch.Tensor:
        """The replacement outputs [rows or 1, pos, sender, d_model] of the `senders` given (a
        slice or an index tensor)."""
        if isinstance(senders, slice):
            if self.replacement_rows is None:
                return self.replacement[:, :, senders]
            return self.replacement[self.replacement_rows, :, senders]
        if self.replacement_rows is None:
            return self.replacement.index_select(2, senders)
        # Two index tensors around a slice put their dimensions first: [rows, sender, pos, d].
        return self.replacement[self.replacement_rows[:, None], :, senders[None]].transpose(1, 2)


@dataclass
class PassOutput:
    """What a pass returns, [rows, ...] each.

    `last_logits` [rows, d_vocab] at the last position; `sender_outputs` [rows kept, pos,
    sender, d_model] every sender's output on a plain pass (None on a rewritten one, which keeps
    only live - replacement per sender). When tracked (for gradients), per layer: the
    attention's input [rows, pos, d_model] (every head's q, k and v read it before their
    LayerNorm), the q, k and v projections [rows, pos, head, d_head] in the autograd graph, the
    MLP's input, and the logits' input `final_input` [rows, pos, d_model].
    """

    last_logits: torch.Tensor
    sender_outputs: torch.Tensor | None
    attention_inputs: list
    mlp_inputs: list
    final_input: torch.Tensor | None
    projections: list = field(default_factory=list)


def layer_norm(x: torch.Tensor, weight_bias, eps: float) -> torch.Tensor:
    """LayerNorm of `x` with the (weight, bias) pair given."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight_bias[0], weight_bias[1], eps)


def read_senders(ablated: torch.Tensor, graph: EdgeGraph) -> torch.Tensor:
    """Which senders' live outputs rewritten passes read [sender] bool (the union over rows).

    A receiver's input is every sender's replacement plus, for each kept edge into it, that
    sender's live - replacement. So a sender whose edges into the receivers that matter are all
    ablated, in every row, need not run: it adds only its replacement. The logits matter, and
    so do the inputs of every sender that is read; edges run from earlier senders to later
    ones, so one sweep from the last sender back settles it. On a small circuit most heads and
    MLPs are not read, on the empty one none is, and on the whole model all are.
    """
    kept = graph.valid & ~ablated.all(3).all(0).cpu()  # some row keeps it at some position
    owner = graph.receiver_owner
    matters = owner == -1
    read = torch.zeros(graph.n_senders, dtype=torch.bool)
    for sender in range(graph.n_senders - 1, -1, -1):
        if bool((kept[sender] & matters).any()):
            read[sender] = True
            matters |= owner == sender
    return read


def as_slice(index: torch.Tensor, device) -> slice | torch.Tensor:
    """`index` (increasing, on the CPU) as a slice when it is a run of consecutive integers,
    else as an index tensor on `device`."""
    if len(index) == 0:
        return slice(0, 0)
    if int(index[-1]) - int(index[0]) + 1 == len(index):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index.to(device)


def correction(rewrite: Rewrite | None, differences: torch.Tensor | None, senders,
               receivers) -> torch.Tensor | None:
    """Sum over ablated senders of (live - replacement), per receiver: [rows, pos, recv, d];
    None when no edge from `senders` (the first senders `differences` holds, a slice or an
    index tensor) into `receivers` (a slice, an index tensor or one receiver) is ablated."""
    if rewrite is None or differences is None:
        return None
    if isinstance(senders, torch.Tensor) and isinstance(receivers, torch.Tensor):
        senders, receivers = senders[:, None], receivers[None, :]  # every pair of the two
    mask = rewrite.ablated[:, senders, receivers]
    n_senders = mask.shape[1]
    if n_senders == 0 or not bool(mask.any()):
        return None
    mask = mask.to(differences.dtype)
    if mask.ndim == 3:
        mask = mask[:, :, None]
    return torch.einsum("bpsd,bsrp->bprd", differences[:, :, :n_senders], mask)


def forward(weights: Gpt2Weights, token_embeds: torch.Tensor, rewrite: Rewrite | None = None,
            track_inputs: bool = False, kept_senders: int | None = None) -> PassOutput:
    """GPT-2 on `token_embeds` [rows, pos, d_model] (the embedding sender's output), with the
    edges `rewrite` names ablated; returns the last position's logits and what `PassOutput` holds
    (the sender outputs of the first `kept_senders` rows only, when given, on a plain pass).

    A plain pass computes each layer's LayerNorm once, since every receiver reads the same
    residual; a rewritten one gives each receiver its own input, and runs only the senders
    whose live output some kept edge carries (`read_senders`): the residual stream it keeps
    holds the others' replacements. Gradient tracking is for plain passes only
    (`attention_input_gradients` rebuilds each receiver's input gradient).
    """
    if track_inputs and rewrite is not None:
        raise ValueError("Receiver gradients are taken on plain passes only, not rewritten ones.")
    rows, n_pos, d_model = token_embeds.shape
    n_layers, n_heads = weights.graph_shape
    graph = weights.graph(n_pos)
    eps = weights.eps
    device = token_embeds.device
    differences = outputs = None
    read = torch.ones(graph.n_senders, dtype=torch.bool)
    if rewrite is None:
        kept = rows if kept_senders is None else kept_senders
        outputs = token_embeds.new_zeros((kept, n_pos, graph.n_senders, d_model))
        outputs[:, :, 0] = token_embeds[:kept].detach()
        resid = token_embeds + weights.wpe[:n_pos]
    else:  # only live - replacement of the senders read is ever used: keep that, in order
        read = read_senders(rewrite.ablated, graph)
        differences = token_embeds.new_zeros((rows, n_pos, int(read.sum()), d_model))
        if read[0]:
            differences[:, :, :1] = (token_embeds.detach()[:, :, None]
                                     - rewrite.replacements(slice(0, 1)))
            resid = token_embeds + weights.wpe[:n_pos]
        else:
            resid = (rewrite.replacements(slice(0, 1))[:, :, 0] + weights.wpe[:n_pos]).expand(
                rows, -1, -1)
    slots = torch.cumsum(read, 0)  # slots[s]: how many senders up to s are read (their places)

    def senders_read(stop: int) -> slice | torch.Tensor:
        """The senders before `stop` that are read, in `differences`' order."""
        if rewrite is None:
            return slice(0, stop)
        return as_slice(torch.nonzero(read[:stop]).flatten(), device)

    def write(senders: slice, values: torch.Tensor) -> None:
        """Record the sender outputs `values` [rows, pos, k, d] of the read `senders`."""
        if outputs is not None:
            outputs[:, :, senders] = values[:outputs.shape[0]].detach()
        if differences is not None and rewrite is not None:
            chosen = as_slice(torch.nonzero(read[senders]).flatten() + senders.start, device)
            before = int(slots[senders.start - 1])
            differences[:, :, before:before + values.shape[2]] = (
                values.detach() - rewrite.replacements(chosen))

    def not_read(senders: slice) -> torch.Tensor | None:
        """The summed replacements [rows or 1, pos, d] of the `senders` that are not read."""
        if rewrite is None or bool(read[senders].all()):
            return None
        skipped = as_slice(torch.nonzero(~read[senders]).flatten() + senders.start, device)
        return rewrite.replacements(skipped).sum(2)

    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=device).tril()
    attention_inputs, mlp_inputs, projections = [], [], []

    for layer, w in enumerate(weights.layers):
        n_before = graph.senders_before(layer)
        head_senders = slice(n_before, n_before + n_heads)
        live = torch.nonzero(read[head_senders]).flatten()
        if len(live):
            every_head = len(live) == n_heads
            heads = slice(None) if every_head else live.to(device)
            first = graph.attention_receivers(layer).start
            receivers = graph.attention_receivers(layer) if every_head else torch.cat(
                [first + part * n_heads + live for part in range(3)]).to(device)
            fix = correction(rewrite, differences, senders_read(n_before), receivers)
            if fix is None:  # every receiver reads the residual: one LayerNorm, seen per head
                if track_inputs:
                    attention_inputs.append(resid)
                normed = layer_norm(resid, w["ln1"], eps)[:, :, None].expand(
                    -1, -1, 3 * len(live), -1)
            else:
                normed = layer_norm(resid[:, :, None, :] - fix, w["ln1"], eps)
            del fix
            n = len(live)
            q = torch.einsum("bphd,hde->bphe", normed[:, :, :n], w["w_q"][heads]) + w["b_q"][heads]
            k = torch.einsum("bphd,hde->bphe", normed[:, :, n:2 * n], w["w_k"][heads]) + w["b_k"][heads]
            v = torch.einsum("bphd,hde->bphe", normed[:, :, 2 * n:], w["w_v"][heads]) + w["b_v"][heads]
            del normed
            if track_inputs:
                projections.append((q, k, v))
            scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * weights.attention_scale[layer]
            scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
            pattern = torch.softmax(scores, dim=-1)
            z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
            head_outputs = torch.einsum("bphe,hed->bphd", z, w["w_o"][heads])
            write(head_senders, head_outputs)
            resid = resid + head_outputs.sum(2)
        skipped = not_read(head_senders)
        if skipped is not None:
            resid = resid + skipped
        resid = resid + w["b_o"]

        mlp_sender = slice(n_before + n_heads, n_before + n_heads + 1)
        if bool(read[mlp_sender.start]):
            fix = correction(rewrite, differences, senders_read(mlp_sender.start),
                             graph.mlp_receiver(layer))
            mlp_input = resid - fix[:, :, 0] if fix is not None else (
                resid.clone() if track_inputs else resid)
            if track_inputs:
                mlp_inputs.append(mlp_input)
            hidden = weights.activations[layer](layer_norm(mlp_input, w["ln2"], eps) @ w["w_in"]
                                                + w["b_in"])
            mlp_output = hidden @ w["w_out"] + w["b_out"]
            write(mlp_sender, mlp_output[:, :, None])
            resid = resid + mlp_output
        elif rewrite is not None:  # an MLP no kept edge reads adds its replacement
            resid = resid + rewrite.replacements(mlp_sender)[:, :, 0]

    fix = correction(rewrite, differences, senders_read(graph.n_senders), graph.logits_receiver)
    final_input = resid - fix[:, :, 0] if fix is not None else (
        resid.clone() if track_inputs else resid)
    last = layer_norm(final_input[:, -1], weights.ln_f, eps)
    logits = last @ weights.w_u
    if weights.b_u is not None:
        logits = logits + weights.b_u
    return PassOutput(logits, outputs, attention_inputs, mlp_inputs,
                      final_input if track_inputs else None, projections)


def attention_input_gradients(weights: Gpt2Weights, layer: int, attention_input: torch.Tensor,
                              projection_grads) -> torch.Tensor:
    """The gradient at the input of each of `layer`'s attention receivers [rows, pos, 3 x head,
    d_model] (q inputs, then k, then v: `EdgeGraph`'s order), from the gradients at their
    projections (q, k, v [rows, pos, head, d_head]) and the input all of them read.

    Each receiver's own copy of the residual feeds only its LayerNorm and its W_Q, W_K or W_V,
    so its gradient is the backward pass of those two, run here one layer at a time after the
    model's backward pass: the forward pass never keeps the residual stream once per receiver
    for autograd (36 copies a layer on GPT-2 small, all layers of every row of a chunk).
    """
    w = weights.layers[layer]
    n_heads = weights.graph_shape[1]
    normed_grads = torch.cat([torch.einsum("bphe,hde->bphd", grad, w[name]) for grad, name
                              in zip(projection_grads, ("w_q", "w_k", "w_v"), strict=True)], dim=2)
    # LayerNorm's own backward, run on a view of the input per receiver (stride 0: no copy).
    with torch.enable_grad():
        copies = attention_input.detach()[:, :, None].expand(-1, -1, 3 * n_heads, -1)
        copies.requires_grad_(True)
        (grads,) = torch.autograd.grad(layer_norm(copies, w["ln1"], weights.eps), [copies],
                                       normed_grads)
    return grads


def rewritten_pass_bytes(n_pos: int, n_senders: int, d_model: int, n_heads: int) -> int:
    """Working memory of one row of a rewritten pass, in bytes: live - replacement per sender,
    one layer's sum of it per receiver (and the copies its einsum makes), and per attention
    receiver its input, its LayerNorm and a copy for the projections (float32)."""
    floats = n_pos * (2 * n_senders * d_model + 4 * 3 * n_heads * d_model
                      + 2 * n_senders * 3 * n_heads)
    return 4 * floats


def gradient_pass_bytes(weights: Gpt2Weights, n_pos: int) -> int:
    """Working memory of one row of a gradient pass, in bytes: what autograd keeps per layer
    (LayerNorm inputs and outputs, q, k, v, the attention pattern, the MLP's hidden units and
    the residual stream), the row's sender outputs, and one layer's receiver gradients with the
    temporaries of their LayerNorm backward (float32)."""
    n_layers, n_heads = weights.graph_shape
    d_model, d_mlp = weights.wte.shape[1], weights.layers[0]["w_in"].shape[1]
    n_senders = 1 + n_layers * (n_heads + 1)
    per_layer = n_pos * (12 * d_model + 3 * d_mlp + 3 * n_heads * n_pos)
    floats = n_layers * per_layer + n_pos * d_model * (n_senders + 4 * 3 * n_heads)
    return 4 * floats


def gradient_rows_per_chunk(weights: Gpt2Weights, n_pos: int) -> int:
    """Rows (pair x IG step) per forward/backward chunk, within `CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // gradient_pass_bytes(weights, n_pos))


def rows_per_chunk(n_pos: int, n_senders: int, d_model: int, n_heads: int) -> int:
    """How many rows of a rewritten pass fit one chunk (`CHUNK_BYTES`)."""
    return max(1, CHUNK_BYTES // rewritten_pass_bytes(n_pos, n_senders, d_model, n_heads))


def rows_of(t: torch.Tensor, passes: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """The rows of `t` that `passes` read: pass r reads row (r // repeats) mod len(t); a
    one-row `t` read by every pass is kept as it is, to broadcast."""
    if t.shape[0] == 1 and repeats == 1:
        return t
    return t[(passes // repeats) % t.shape[0]]


def chunk_bounds(rows: int, step: int, group: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of chunks of at most `step` rows over `rows`, where each run of `group`
    rows (one mask on every pair) is never shared with another run: whole runs per chunk, or
    one run in even parts. A chunk runs only the senders its masks read (`read_senders`), so a
    cheap mask (the empty circuit: none) stays cheap when its neighbour is dear."""
    if group <= 1:
        return [(start, min(rows, start + step)) for start in range(0, rows, step)]
    if step >= group:
        size = step // group * group
        return [(start, min(rows, start + size)) for start in range(0, rows, size)]
    parts = math.ceil(group / step)
    size = math.ceil(group / parts)
    return [(start, min(first + group, start + size)) for first in range(0, rows, group)
            for start in range(first, first + group, size)]


@torch.no_grad()
def rewritten_logits(weights: Gpt2Weights, token_embeds: torch.Tensor, ablated: torch.Tensor,
                     replacement: torch.Tensor, check=None, mask_repeats: int = 1) -> torch.Tensor:
    """Last-position logits [rows, d_vocab] of many rewritten passes, in chunks of rows.

    `token_embeds` and `replacement` have one row per pass, 1 (shared by all), or a cycle of n
    rows that pass r reads at r mod n (e.g. one per pair, for passes that run every pair under
    many masks: repeating them would copy the sender outputs per mask); pass r reads the mask
    `ablated[r // mask_repeats]` (e.g. `mask_repeats` = pairs: each mask on every pair, without
    a copy of the masks per pair); `check()` runs between chunks (progress, cancellation).
    """
    if mask_repeats < 1:
        raise ValueError(f"mask_repeats must be at least 1; got {mask_repeats}")
    n_masks = ablated.shape[0] * mask_repeats
    rows = max(token_embeds.shape[0], n_masks, replacement.shape[0])
    for n in (token_embeds.shape[0], n_masks, replacement.shape[0]):
        if rows % n:
            raise ValueError(f"{n} rows do not cycle evenly over {rows} passes")
    n_pos, d_model = token_embeds.shape[1:]
    step = rows_per_chunk(n_pos, ablated.shape[1], d_model, weights.graph_shape[1])
    pieces = []
    for start, stop in chunk_bounds(rows, step, mask_repeats):
        chunk = torch.arange(start, stop, device=token_embeds.device)
        # The replacement is read sender by sender through its rows, never copied whole.
        replacement_rows = None if replacement.shape[0] == 1 else (
            chunk.to(replacement.device) % replacement.shape[0])
        embeds = rows_of(token_embeds, chunk).expand(stop - start, -1, -1)
        rewrite = Rewrite(rows_of(ablated, chunk, mask_repeats), replacement, replacement_rows)
        pieces.append(forward(weights, embeds, rewrite).last_logits)
        if check is not None:
            check(stop, rows)
    return torch.cat(pieces)
