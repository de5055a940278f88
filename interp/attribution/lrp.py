"""Layer-wise relevance propagation for transformers (CP-LRP, Ali et al. 2022; AttnLRP, Achtibat
et al. 2024), computed as gradient x input with a modified backward pass.

LRP hands the target back through the network layer by layer so that the relevance is conserved:
each token's share (plus its position's, plus what the biases absorb) adds up to the target
logit. For GPT-2 that comes from treating, in the backward pass only, each LayerNorm's scale and
the attention probabilities as constants and GELU by the identity rule (relevance passes through
unchanged); the network is then linear in its input embeddings, and gradient x input is the
relevance. The modifications are temporary hooks on this model only, removed after the pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from interp.attribution.gradients import (
    EMBEDDING_LAYER,
    POSITION_LAYER,
    LayerGradients,
    gradient_result,
    layer_gradients,
)
from interp.attribution.results import AttributionResult, ProgressCallback, register_method
from interp.attribution.targets import AttributionTarget
from interp.errors import UnsupportedArchitectureError, invalid_choice
from interp.patching.architecture import has_gpt2_blocks

LRP_VARIANTS = ("cp", "attnlrp")
# Below this |x|, GELU(x) / x is taken at its limit 1/2 (GELU'(0)).
GELU_RATIO_EPS = 1e-6


def constant_in_backward(activation, hook):
    """The same value, with no gradient through it (a LayerNorm scale, attention weights)."""
    return activation.detach()


def scaled_gradient(factor: float) -> Callable:
    """The same value, with the gradient through it divided by `factor` (AttnLRP's uniform rule
    on the query, key and value of attention's two matrix products)."""

    def hook(activation, hook):
        return activation.detach() + (activation - activation.detach()) / factor

    return hook


def gelu_identity_rule(module, inputs, output):
    """GELU passes relevance through unchanged: backward through y = x * (y / x), the ratio
    held constant, so x * dy/dx carries exactly the relevance y * dR/dy."""
    x = inputs[0]
    ratio = torch.where(x.abs() > GELU_RATIO_EPS, output / torch.where(x == 0, 1.0, x), 0.5)
    return output.detach() + ratio.detach() * (x - x.detach())


def lrp_hooks(model, variant: str) -> tuple[list[tuple[str, Callable]], list[tuple[torch.nn.Module, Callable]]]:
    """Hook-point hooks and module hooks that turn the backward pass into `variant`'s LRP."""
    bridge = model.bridge
    hook_points = [("ln_final.hook_scale", constant_in_backward)]
    modules = []
    for layer in range(model.info.n_layers):
        prefix = f"blocks.{layer}"
        hook_points += [(f"{prefix}.ln1.hook_scale", constant_in_backward),
                        (f"{prefix}.ln2.hook_scale", constant_in_backward)]
        if variant == "cp":
            hook_points.append((f"{prefix}.attn.hook_pattern", constant_in_backward))
        else:
            hook_points += [(f"{prefix}.attn.hook_q", scaled_gradient(4.0)),
                            (f"{prefix}.attn.hook_k", scaled_gradient(4.0)),
                            (f"{prefix}.attn.hook_v", scaled_gradient(2.0))]
        modules.append((bridge.blocks[layer].mlp.original_component.act, gelu_identity_rule))
    return hook_points, modules


def lrp_gradients(model, token_ids: Sequence[int], target: AttributionTarget, variant: str,
                  layers: Sequence[str] = (), progress: ProgressCallback | None = None
                  ) -> LayerGradients:
    """Gradients under the LRP backward pass at the embeddings and `layers`."""
    if variant not in LRP_VARIANTS:
        raise invalid_choice("LRP variant", variant, LRP_VARIANTS)
    if not has_gpt2_blocks(model):
        raise UnsupportedArchitectureError(
            f"LRP's rules are written for GPT-2's blocks; {model.info.label} is a "
            f"{model.info.architecture}. Use integrated gradients or gradient x input.")
    hook_points, modules = lrp_hooks(model, variant)
    return layer_gradients(model, token_ids, target, [EMBEDDING_LAYER, POSITION_LAYER, *layers],
                           hook_point_hooks=hook_points, module_hooks=modules, progress=progress)


def relevance_budget(token_relevance: torch.Tensor, position_relevance: torch.Tensor,
                     target_value: float) -> dict[str, float | None]:
    """Where the target went: tokens, positions, and the rest, which the biases absorbed."""
    tokens, positions = float(token_relevance.sum()), float(position_relevance.sum())
    bias = target_value - tokens - positions
    share = bias / target_value if abs(target_value) > 1e-9 else None
    return {"token_relevance_total": tokens, "position_relevance_total": positions,
            "bias_relevance": bias, "bias_share": share}


@register_method("lrp",
                 "LRP for transformers (CP-LRP by default, or AttnLRP): relevance handed back "
                 "layer by layer and conserved, so tokens, positions and biases add up to the "
                 "target.", gradient_based=True)
def lrp(model, token_ids: Sequence[int], target: AttributionTarget, *,
        progress: ProgressCallback | None = None, variant: str = "cp") -> AttributionResult:
    """LRP relevance of each token's embedding; `variant` "cp" (CP-LRP: attention weights held
    constant) or "attnlrp" (AttnLRP: gradients through attention's matrix products split
    uniformly, q and k by 4, v by 2, as in `lxt`). Both hold LayerNorm scales constant and pass
    GELU by the identity rule.

    `scores` are the token embeddings' relevance; `extras["position_relevance"]` is the position
    embeddings' [n_tokens], and `extras["bias_relevance"]` the rest, so tokens + positions + rest =
    the target. With CP-LRP the rest is what the biases absorbed (0 in a model without biases);
    with AttnLRP it also holds what the softmax does not pass on. One forward and one backward
    pass.
    """
    grads = lrp_gradients(model, token_ids, target, variant, progress=progress)
    token_relevance = grads.gradient_x_input(EMBEDDING_LAYER)
    position_relevance = grads.gradient_x_input(POSITION_LAYER)
    budget = relevance_budget(token_relevance, position_relevance, grads.target_value)
    share = budget["bias_share"]
    absorbed = "biases" if variant == "cp" else "biases and the softmax"
    notes = [f"Relevance of the target {grads.target_value:.4g}: tokens "
             f"{budget['token_relevance_total']:.4g}, positions "
             f"{budget['position_relevance_total']:.4g}, {absorbed} "
             f"{budget['bias_relevance']:.4g}"
             + (f" ({share:.0%} of the target)." if share is not None else ".")]
    if variant == "attnlrp":
        notes.append("AttnLRP in gradient form does not conserve relevance through the attention "
                     "softmax, so the rest is not the biases' alone.")
    return gradient_result(model, "lrp", token_ids, target, token_relevance, grads.target_value,
                           extras={"position_relevance": position_relevance, **budget},
                           notes=notes, options={"variant": variant})
