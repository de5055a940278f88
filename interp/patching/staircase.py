"""The staircase engine: exact patching on GPT-2-style blocks with no wasted computation.

A patch can't change anything computed before it, so each patched run starts at the patched
layer from the cached activations of the run it patches into, driving the bridge's blocks
directly; many patches share one forward pass (the batch axis holds patch x prompt, and runs
join the batch at the block where they start, so the batch grows with depth like a
staircase); positions before the first one a patch changes are read from the cache (causal
attention), and patches that change nothing (before the first corrupted token) are not run. A
head's output z enters the residual through W_O alone, so its patch is a rank-d_head update
of the attention output and the run starts after that layer's attention; the last block
computes its attention for the last query only and its MLP at the last position only, which
is all the metric reads. `interp.patching.self_check` checks this against plain hooked runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from interp.activations import uses_tanh_gelu
from interp.patching import gpt2_block
from interp.patching.gpt2_block import plain_gpt2_blocks
from interp.patching.results import HEAD_SITES, RESIDUAL_STREAM_SITES
from interp.patching.runs import Patch, hook_name, patched_copies

# Position-specific patches are split into this many groups of neighbouring first changed
# positions; a group's pass computes only the positions from the group's first one. More groups
# compute fewer positions in smaller batches: 5 was fastest for 20-token prompts on GPT-2 small
# (1 thread: 4.3 s, vs 4.7 s for one group per position and 7.2 s with no groups).
PREFIX_GROUPS = 5


def group_start(first: int, n_positions: int, groups: int | None = None) -> int:
    """Where the pass of a patch whose first changed position is `first` starts computing."""
    per_group = math.ceil(n_positions / (groups or PREFIX_GROUPS))
    return first // per_group * per_group


def position_slice(site: str, activation: torch.Tensor, first: int) -> torch.Tensor:
    """The part of an activation at positions >= first (queries, for the pattern)."""
    return activation[:, :, first:] if site == "pattern" else activation[:, first:]


def shifted(site: str, index: tuple, first: int) -> tuple:
    """A patch index in an activation that starts at position `first`."""
    if first == 0:
        return index
    if site == "pattern":
        return index if len(index) == 1 else (index[0], index[1] - first)
    if not index or not isinstance(index[0], int):
        return index
    return (index[0] - first, *index[1:])


def head_output_changes(receiving: dict, source: dict, layer: int, first: int,
                        w_o: torch.Tensor) -> torch.Tensor:
    """(source z - receiving z) of every head through its W_O: [head, prompt, pos - first, d]."""
    name = hook_name("z", layer)
    difference = source[name][:, first:] - receiving[name][:, first:]
    return torch.einsum("bphe,hed->hbpd", difference, w_o)


def starting_residual(patches: Sequence[Patch], receiving: dict, source: dict,
                      n_prompts: int, first: int, block=None) -> torch.Tensor:
    """The residual [patch*prompt, pos - first, d] where these patches' runs start.

    All patches share a site and layer; `first` is where the computed positions begin; `block`
    is the patched layer's block (its W_O carries a z patch).
    """
    site, layer = patches[0].site, patches[0].layer
    chosen = [shifted(site, p.index, first) for p in patches]
    name = hook_name(site, layer)
    n_copies = len(chosen)

    def suffix(run: dict, hook: str) -> torch.Tensor:
        return run[hook][:, first:]
    if site in RESIDUAL_STREAM_SITES:
        return patched_copies(suffix(receiving, name), suffix(source, name), chosen, n_prompts)
    if site == "attn_out":  # resid_mid = resid_pre + attn_out
        resid_pre = suffix(receiving, hook_name("resid_pre", layer)).repeat(n_copies, 1, 1)
        return resid_pre + patched_copies(suffix(receiving, name), suffix(source, name), chosen,
                                          n_prompts)
    if site == "mlp_out":  # resid_post = resid_mid + mlp_out
        resid_mid = suffix(receiving, hook_name("resid_mid", layer)).repeat(n_copies, 1, 1)
        return resid_mid + patched_copies(suffix(receiving, name), suffix(source, name), chosen,
                                          n_prompts)
    if site == "z":  # resid_mid + (source z_h - receiving z_h) @ W_O[h]
        changes = head_output_changes(receiving, source, layer, first, block.attn.W_O)
        resid_mid = suffix(receiving, hook_name("resid_mid", layer))
        starts = resid_mid.repeat(n_copies, 1, 1)
        for i, (positions, head) in enumerate(chosen):
            rows = slice(i * n_prompts, (i + 1) * n_prompts)
            starts[rows, positions] += changes[head][:, positions]
        return starts
    return suffix(receiving, hook_name("resid_pre", layer)).repeat(n_copies, 1, 1)


class PrefixKeysValues:
    """Keys and values of positions before `first`, taken from the receiving run.

    Handed to the blocks as `past_key_values`: the bridge's attention appends the keys and
    values it computes for positions >= first to these, exactly as in cached generation.
    """

    def __init__(self, receiving: dict, first: int, n_prompts: int):
        self.receiving, self.first, self.n_prompts = receiving, first, n_prompts

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int):
        if self.first == 0:
            return keys, values
        return self.joined("k", layer_idx, keys), self.joined("v", layer_idx, values)

    def joined(self, site: str, layer: int, later: torch.Tensor) -> torch.Tensor:
        """The cached positions before `first` (broadcast over the patches' copies) followed by
        `later` [rows, head, pos, d], each written once (repeat-then-cat writes the prefix twice)."""
        rows, n_heads, n_later, d_head = later.shape
        cached = self.receiving[hook_name(site, layer)][:, :self.first].transpose(1, 2)
        out = later.new_empty(rows, n_heads, self.first + n_later, d_head)
        out.view(rows // self.n_prompts, self.n_prompts, n_heads, -1, d_head)[
            :, :, :, :self.first].copy_(cached)
        out[:, :, self.first:] = later
        return out


class LastQueryKeysValues:
    """For the last block's attention run on the last query alone: the keys and values of every
    earlier position (cached before `first`, computed here from `first` on) go before the
    last position's own."""

    def __init__(self, prefix: PrefixKeysValues, keys: torch.Tensor, values: torch.Tensor):
        self.prefix_cache, self.keys, self.values = prefix, keys, values

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int):
        earlier_keys, earlier_values = self.prefix_cache.update(self.keys, self.values, layer_idx)
        return torch.cat([earlier_keys, keys], dim=2), torch.cat([earlier_values, values], dim=2)


def fused_mlp(model):
    """The MLP as the engine runs it: `block -> (x -> mlp(x))`. For GPT-2's tanh GELU it is
    c_proj(gelu_tanh(c_fc(x))) with the block's own Conv1D weights (dropout is off in eval);
    for anything else the block's own MLP. (The fused GELU is a tenth of a head sweep's time
    on GPT-2 small: see `interp.activations`.)"""
    if not uses_tanh_gelu(model):
        return lambda block, x: block.mlp(x)

    def mlp(block, x: torch.Tensor) -> torch.Tensor:
        original = block.mlp.original_component
        return original.c_proj(F.gelu(original.c_fc(x), approximate="tanh"))
    return mlp


def block_forward(block, hidden: torch.Tensor, mlp, **attention_kwargs) -> torch.Tensor:
    """One GPT-2 block: resid_mid = resid_pre + attn(ln1(resid_pre)), then
    resid_post = resid_mid + mlp(ln2(resid_mid))."""
    output = block.attn(block.ln1(hidden), **attention_kwargs)
    mid = hidden + (output[0] if isinstance(output, tuple) else output)
    return mid + mlp(block, block.ln2(mid))


def split_heads(projected: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[rows, pos, head * d_head] -> [rows, head, pos, d_head]."""
    rows, positions, width = projected.shape
    return projected.view(rows, positions, n_heads, width // n_heads).transpose(1, 2)


def last_block_at_last_position(block, hidden: torch.Tensor, prefix: PrefixKeysValues,
                                last_query_only: bool, mlp) -> torch.Tensor:
    """The last block's output at the last position only [rows, 1, d], which is all the metric
    reads. Same arithmetic as the block: resid_mid = attn_out + resid_pre, then resid_post =
    resid_mid + mlp(ln2(resid_mid)). With `last_query_only` the keys and values of the earlier
    positions are projected here and the bridge's attention runs for the last query alone
    (no hook may then be watching this block's attention).
    """
    normalized = block.ln1(hidden)
    attention_kwargs: dict[str, object] = {"past_key_values": prefix}
    if last_query_only:
        attention = block.attn
        n_heads = attention.W_K.shape[0]
        earlier = normalized[:, :-1]
        keys = earlier @ attention.W_K.permute(1, 0, 2).flatten(1) + attention.b_K.flatten()
        values = earlier @ attention.W_V.permute(1, 0, 2).flatten(1) + attention.b_V.flatten()
        attention_kwargs = {"past_key_values": LastQueryKeysValues(
            prefix, split_heads(keys, n_heads), split_heads(values, n_heads))}
        normalized = normalized[:, -1:]
    output = block.attn(normalized, **attention_kwargs)
    attn_out = output[0] if isinstance(output, tuple) else output
    mid = attn_out[:, -1:] + hidden[:, -1:]
    return mid + mlp(block, block.ln2(mid))


def head_patch_hook(patches: Sequence[Patch], source: dict, n_prompts: int,
                    joined_at: dict[int, int], layer: int, first: int):
    """A hook patching, in the rows that joined at `layer`, each run's head slice from `source`."""
    site = patches[0].site
    name = hook_name(site, layer)
    chosen = [shifted(site, p.index, first) for p in patches]
    source_part = position_slice(site, source[name], first)

    def patch_rows(activation, hook):
        joined = joined_at[layer]
        patched = patched_copies(activation[joined:], source_part, chosen, n_prompts)
        return torch.cat([activation[:joined], patched]) if joined else patched
    return patch_rows


def staircase_scores(model, patches: Sequence[Patch], receiving: dict, source: dict,
                     n_prompts: int, score, first_corrupted: int, n_positions: int,
                     receiving_scores: torch.Tensor) -> torch.Tensor:
    """Metric [patch, prompt] of these patches, in as few passes down the blocks as possible.

    Patches whose first changed positions fall in the same group share a pass that computes
    only the positions from the group's first one, reading earlier positions' keys and values
    from the receiving run (under causal attention nothing before a patched position changes).
    Patches that change nothing score `receiving_scores` [prompt], the receiving run's metric.
    """
    by_start: dict[int, list[int]] = {}
    scores = receiving_scores.unsqueeze(0).repeat(len(patches), 1)
    for i, p in enumerate(patches):
        first = p.first_changed(first_corrupted)
        if first is not None:
            by_start.setdefault(group_start(first, n_positions), []).append(i)
    for first, members in by_start.items():
        scores[torch.tensor(members)] = staircase_pass(
            model, [patches[i] for i in members], receiving, source, n_prompts, score, first).cpu()
    return scores


@torch.no_grad()
def staircase_pass(model, patches: Sequence[Patch], receiving: dict, source: dict,
                   n_prompts: int, score, first: int) -> torch.Tensor:
    """Metric [patch, prompt] of these patches (none changing a position before `first`).

    Runs join the batch at the block where they start, so the batch grows with depth ("a
    staircase") and every block runs once for all patches that have reached it. Head sites
    other than z are patched by a hook on the rows that joined at that block.
    """
    n_layers = model.info.n_layers
    last_layer = n_layers - 1
    by_entry: dict[tuple[int, bool], list[Patch]] = {}
    for p in patches:
        by_entry.setdefault(p.entry, []).append(p)
    row_order: list[Patch] = []
    hidden: torch.Tensor | None = None
    joined_at: dict[int, int] = {}  # layer -> first row of the runs that joined there
    hooks = []
    hooked_patches = [p for p in patches if p.site in HEAD_SITES and p.site != "z"]
    for layer in sorted({p.layer for p in hooked_patches}):
        at_layer = [p for p in hooked_patches if p.layer == layer]
        hooks.append((hook_name(at_layer[0].site, layer),
                      head_patch_hook(at_layer, source, n_prompts, joined_at, layer, first)))
    last_query_only = all(p.layer != last_layer for p in hooked_patches)
    prefix = PrefixKeysValues(receiving, first, n_prompts)
    block_kwargs = {"past_key_values": prefix} if first > 0 else {}
    mlp = fused_mlp(model)

    def join(current, entering: list[Patch], block, last_position_only: bool = False):
        start = starting_residual(entering, receiving, source, n_prompts, first, block)
        if last_position_only:  # after the last block, as last_block_at_last_position leaves it
            start = start[:, -1:]
        row_order.extend(entering)
        return start if current is None else torch.cat([current, start])

    first_block = min(entry[0] for entry in by_entry)
    plain = None if hooks else plain_gpt2_blocks(model)
    with model.hooked(hooks) as bridge:
        for block_index in range(first_block, n_layers):
            block = bridge.blocks[block_index]
            entering = by_entry.get((block_index, False))
            if entering:
                joined_at[block_index] = 0 if hidden is None else hidden.shape[0]
                hidden = join(hidden, entering, block)
            last_block = block_index == last_layer
            if hidden is not None and plain is not None:
                hidden = gpt2_block.block(plain[block_index], hidden, prefix, block_index,
                                          last_position_only=last_block and hidden.shape[1] > 1)
            elif hidden is not None and last_block:
                hidden = last_block_at_last_position(block, hidden, prefix,
                                                     last_query_only and hidden.shape[1] > 1, mlp)
            elif hidden is not None:
                hidden = block_forward(block, hidden, mlp, **block_kwargs)
            entering_mid = by_entry.get((block_index, True))
            if entering_mid:
                mid = join(None, entering_mid, block, last_position_only=last_block)
                post = (gpt2_block.after_mlp(plain[block_index], mid) if plain is not None
                        else mid + mlp(block, block.ln2(mid)))
                hidden = post if hidden is None else torch.cat([hidden, post])
        after_last = by_entry.get((n_layers, False))
        if after_last:
            hidden = join(hidden, after_last, None, last_position_only=True)
        assert hidden is not None  # every patch enters at some block
        scores = score(hidden[:, -1])
    position = {id(p): i for i, p in enumerate(row_order)}
    return scores[torch.tensor([position[id(p)] for p in patches])]
