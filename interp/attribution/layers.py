"""Layer-wise flow: where the target's relevance sits at each layer, position by position.

The same backward pass that attributes the target to the input tokens also scores every
intermediate vector: each layer's residual stream (what the position holds so far), and what the
layer's attention and MLP add to it. Read bottom to top, relevance moves from the tokens that
matter to the last position, where the prediction is read; under CP-LRP on a model without biases
each residual row adds up to the target exactly, so the rows are shares of one budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from interp.attribution.gradients import layer_gradients
from interp.attribution.lrp import LRP_VARIANTS, lrp_gradients
from interp.attribution.results import ProgressCallback, prompt_token_ids
from interp.attribution.targets import AttributionTarget, resolve_target
from interp.errors import InvalidOptionError, invalid_choice

FLOW_METHODS = ("lrp", "gradient_x_input")


@dataclass(frozen=True)
class LayerFlowResult:
    """Gradient x activation (under LRP's rules or plain gradients) at every layer and token.

    `residual` [n_layers + 1, n_tokens]: row l is the residual stream entering block l
    (row 0: embeddings, token + position), the last row the stream after the last block.
    `attention` and `mlp` [n_layers, n_tokens]: what each block's attention and MLP outputs
    contribute at each position. All on the CPU. `residual_totals[l]` is row l's sum: under
    CP-LRP it equals the target up to what the biases absorb.
    """

    method: str
    model_name: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    target: AttributionTarget
    target_value: float
    residual: torch.Tensor
    attention: torch.Tensor
    mlp: torch.Tensor
    notes: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @property
    def residual_totals(self) -> torch.Tensor:
        return self.residual.sum(dim=1)

    @property
    def n_layers(self) -> int:
        return int(self.attention.shape[0])


def flow_sites(n_layers: int) -> tuple[list[str], list[str], list[str]]:
    """The hook names of the layer-wise flow: every residual stream, attention output and MLP output."""
    residual = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
    residual.append(f"blocks.{n_layers - 1}.hook_resid_post")
    attention = [f"blocks.{layer}.hook_attn_out" for layer in range(n_layers)]
    mlp = [f"blocks.{layer}.hook_mlp_out" for layer in range(n_layers)]
    return residual, attention, mlp


def layer_flow(model, prompt: str | Sequence[int], target=None, method: str = "lrp",
               progress: ProgressCallback | None = None, variant: str = "cp") -> LayerFlowResult:
    """Relevance of every layer's residual stream, attention output and MLP output per token.

    `method` "lrp" (the LRP backward pass; `variant` as in `lrp`) or "gradient_x_input" (plain
    gradients). One forward and one backward pass, whatever the number of layers. `target` as in
    `attribute`, but a single token or a contrast (not a continuation).
    """
    if method not in FLOW_METHODS:
        raise invalid_choice("layer-flow method", method, FLOW_METHODS)
    if method == "lrp" and variant not in LRP_VARIANTS:
        raise invalid_choice("LRP variant", variant, LRP_VARIANTS)
    token_ids = prompt_token_ids(model, prompt)
    resolved = resolve_target(model, token_ids, target)
    if resolved.is_continuation:
        raise InvalidOptionError("The layer-wise flow explains one token (or a contrast); "
                                 "choose a single-token target, not a continuation.")
    residual, attention, mlp = flow_sites(model.info.n_layers)
    sites = [*residual, *attention, *mlp]
    if method == "lrp":
        grads = lrp_gradients(model, token_ids, resolved, variant, sites, progress=progress)
    else:
        grads = layer_gradients(model, token_ids, resolved, sites, progress=progress)
    rows = {name: grads.gradient_x_input(name) for name in sites}
    notes = ["Row 0 of the residual stream is the embedding (token + position); each later row "
             "is the stream entering that block, the last row the stream after the last block."]
    if method == "gradient_x_input":
        notes.append("Plain gradient x activation: rows need not add up to the target.")
    return LayerFlowResult(
        method=method, model_name=model.name, tokens=tuple(model.display_tokens(token_ids)),
        token_ids=token_ids, target=resolved, target_value=grads.target_value,
        residual=torch.stack([rows[name] for name in residual]),
        attention=torch.stack([rows[name] for name in attention]),
        mlp=torch.stack([rows[name] for name in mlp]), notes=tuple(notes),
        options={"variant": variant} if method == "lrp" else {})
