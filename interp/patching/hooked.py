"""Hooked patching: each patched run is a plain forward pass of the bridge with one hook.

This is the textbook procedure (and TransformerLens'): run the prompt the patch goes into,
and at the patched site overwrite the component's slice with its value from the other run.
It needs nothing but the bridge's hooks, so it runs on any bridged model; it is the reference
the staircase engine is checked against and its fallback. The hook edits the activation in
place, as TransformerLens' setters do, so on a bridge patching `resid_mid` (a hook on ln2's
input) changes the residual stream that flows on, not only the MLP's input. Patches are
batched (patch x prompt rows), one forward pass for many of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from interp.errors import InvalidOptionError
from interp.patching.results import SITES
from interp.patching.runs import Patch, hook_name


def check_hooks_exist(model, site: str) -> None:
    """Refuse a site whose hook this model's blocks don't have (no resid_mid in parallel blocks)."""
    hooks = model.bridge.hook_dict
    available = [s for s in SITES if hook_name(s, 0) in hooks]
    if hook_name(site, 0) not in hooks:
        raise InvalidOptionError(
            f"{model.info.label} has no {site!r} activation to patch (its blocks have no hook "
            f"{hook_name(site, 0)!r}). Sites it has: {', '.join(repr(s) for s in available)}.")


def slice_setter(patches: Sequence[tuple[int, Patch]], source: torch.Tensor, n_prompts: int):
    """A hook writing, in place, each patch's slice from `source` into the rows of its copy."""
    def set_slices(activation, hook):
        for copy, p in patches:
            rows = slice(copy * n_prompts, (copy + 1) * n_prompts)
            activation[(rows, *p.index)] = source[(slice(None), *p.index)].to(activation.dtype)
        return activation
    return set_slices


@torch.no_grad()
def hooked_logits(model, patches: Sequence[Patch], tokens: torch.Tensor, source: dict,
                  n_prompts: int, extra_hooks=()) -> torch.Tensor:
    """Last-position logits [patch*prompt, d_vocab] of one hooked forward pass per patch.

    `tokens` [prompt, pos] is the run patched into (with `extra_hooks`, e.g. its noise);
    `source` the cached activations patched from, by hook name.
    """
    by_layer: dict[int, list[tuple[int, Patch]]] = {}
    for copy, p in enumerate(patches):
        by_layer.setdefault(p.layer, []).append((copy, p))
    hooks = list(extra_hooks)
    for layer, at_layer in sorted(by_layer.items()):
        name = hook_name(at_layer[0][1].site, layer)
        hooks.append((name, slice_setter(at_layer, source[name], n_prompts)))
    batch = tokens.to(model.info.device).repeat(len(patches), 1)
    with model.hooked(hooks) as bridge:
        return bridge(batch)[:, -1]
