"""Gradient attribution: how the target responds to each token's embedding (or any layer's).

Saliency is the size of the gradient of the target with respect to a token's vector (how
sensitive the output is there); gradient x input is the gradient dotted with the vector itself
(a first-order estimate of the token's contribution); integrated gradients (Sundararajan et al.
2017) averages the gradient along the straight path from a baseline (zeros, a pad/eos token, the
mean embedding) to the real input, so the scores add up to f(input) - f(baseline) (completeness).
Every method runs on the model's token embeddings by default, or on any layer with a token axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from interp.activations import fused_tanh_gelu
from interp.attribution.results import AttributionResult, ProgressCallback, register_method
from interp.attribution.targets import AttributionTarget, logits_from, target_scalar
from interp.errors import InvalidOptionError, invalid_choice

EMBEDDING_LAYER = "hook_embed"
POSITION_LAYER = "hook_pos_embed"
BASELINES = ("eos", "pad", "zeros", "mean_embedding")
INTEGRATION_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left",
                       "riemann_right")
BLOCK_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
# Hook points whose activation has no token axis right after the batch axis.
NO_TOKEN_AXIS = ("hook_pattern", "hook_attn_scores")
# Token positions held in one batched forward pass of integrated gradients (steps x tokens), at
# most; fewer when the activations autograd keeps for the backward pass would pass
# GRADIENT_PASS_BYTES (measured on GPT-2 small with the fused GELU: ~1.2 MB per token, so 50
# steps on 15 tokens in one pass held ~0.9 GB, too much beside a model on a 2.7 GB host).
TOKENS_PER_PASS = 4096
GRADIENT_PASS_BYTES = 512 * 2**20
# Stands for "the baseline vector here" in the ids the IG forward function receives.
BASELINE_SLOT = -1

Hooks = Sequence[tuple[str, Callable]]


def layer_choices(model) -> list[str]:
    """The layers offered for attribution: embeddings, then each block's residual sites."""
    return [EMBEDDING_LAYER, POSITION_LAYER] + [
        f"blocks.{layer}.hook_{site}" for layer in range(model.info.n_layers) for site in BLOCK_SITES]


def check_layer(model, layer: str) -> None:
    """Refuse names that are not hook points of `model`, or whose activation has no token axis."""
    if not isinstance(layer, str) or layer not in model.bridge.hook_dict:
        raise InvalidOptionError(
            f"Unknown layer {layer!r}. Choose a hook point of {model.info.label}, e.g. "
            f"{', '.join(layer_choices(model)[:7])}, ... (any blocks.<layer>.hook_<site> with "
            f"site in {', '.join(BLOCK_SITES)}).")
    if layer.endswith(NO_TOKEN_AXIS):
        raise InvalidOptionError(
            f"{layer} holds attention [head, query, key] with no single token axis; choose a "
            "residual, attention-output or MLP-output layer.")


@dataclass(frozen=True)
class LayerGradients:
    """Activations and d target / d activation at some layers, from one forward and backward.

    Each tensor is [n_tokens, ...] (batch axis dropped), on the model's device.
    """

    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    target_value: float

    def gradient_x_input(self, layer: str) -> torch.Tensor:
        """Per-token sum of activation x gradient: [n_tokens], on the CPU."""
        product = self.activations[layer] * self.gradients[layer]
        return product.flatten(1).sum(dim=1).detach().float().cpu()

    def gradient_norm(self, layer: str) -> torch.Tensor:
        return self.gradients[layer].flatten(1).norm(dim=1).detach().float().cpu()


@contextmanager
def module_forward_hooks(hooks: Sequence[tuple[torch.nn.Module, Callable]]) -> Iterator[None]:
    """Plain torch forward hooks on modules (not hook points), removed however the block ends."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_gradients(model, token_ids: Sequence[int], target: AttributionTarget,
                    layers: Sequence[str], hook_point_hooks: Hooks = (),
                    module_hooks: Sequence[tuple[torch.nn.Module, Callable]] = (),
                    progress: ProgressCallback | None = None) -> LayerGradients:
    """One forward and one backward pass of the target, keeping activations and gradients.

    The token and position embeddings are made leaves that require gradients (the weights stay
    frozen), so every later activation is part of the graph. `hook_point_hooks` and
    `module_hooks` change the backward pass (LRP's rules); they, and ours, exist only inside
    `model.hooked()`, under the model's lock.
    """
    wanted = list(dict.fromkeys(layers))
    captured: dict[str, torch.Tensor] = {}

    # Hook points answer to aliases (hook_embed is embed.hook_out): key by the name we asked for.
    def make_leaf(name):
        def hook(activation, hook):
            captured[name] = activation.detach().requires_grad_(True)
            return captured[name]
        return hook

    def capture(name):
        def hook(activation, hook):
            captured[name] = activation
        return hook

    hooks = [(EMBEDDING_LAYER, make_leaf(EMBEDDING_LAYER)), (POSITION_LAYER, make_leaf(POSITION_LAYER))]
    hooks += [(name, capture(name)) for name in wanted
              if name not in (EMBEDDING_LAYER, POSITION_LAYER)]
    tokens = torch.tensor([list(token_ids)], device=model.device)
    with torch.enable_grad(), model.hooked(fwd_hooks=[*hooks, *hook_point_hooks]) as bridge, \
            module_forward_hooks(module_hooks):
        logits = bridge(tokens)
        value = target_scalar(logits[0, -1], target)
        grads = torch.autograd.grad(value, [captured[name] for name in wanted], allow_unused=True)
        report(progress, 1, 1)
    gradients = {name: (torch.zeros_like(captured[name]) if grad is None else grad)[0]
                 for name, grad in zip(wanted, grads, strict=True)}
    # A captured (not replaced) activation is the tensor both the block and its skip
    # connection read, so its gradient has both paths (resid_mid included).
    return LayerGradients(activations={name: captured[name][0].detach() for name in wanted},
                          gradients=gradients, target_value=float(value.detach()))


def gradient_result(model, method: str, token_ids: Sequence[int], target: AttributionTarget,
                    scores: torch.Tensor, target_value: float | None,
                    baseline_value: float | None = None, extras: dict | None = None,
                    notes: Sequence[str] = (), options: dict | None = None) -> AttributionResult:
    """An `AttributionResult` for a gradient method, with the model's name and tokens filled in."""
    return AttributionResult(
        method=method, model_name=model.name, tokens=tuple(model.display_tokens(token_ids)),
        token_ids=tuple(token_ids), scores=scores.detach().float().cpu(), target=target,
        target_value=target_value, baseline_value=baseline_value, extras=extras or {},
        notes=tuple(notes), options=options or {})


def layer_note(layer: str) -> tuple[str, ...]:
    """The note saying that scores at an inner layer belong to that layer's vectors, not the input tokens."""
    if layer == EMBEDDING_LAYER:
        return ()
    return (f"Scores are for the activations at {layer}: the score at a position is what that "
            "position's vector there contributes, not the input token alone.",)


def report(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call `progress(done, total)` if there is a progress callback."""
    if progress is not None:
        progress(done, total)


@register_method("gradient_x_input",
                 "Gradient x input: each token's embedding dotted with the target's gradient "
                 "there (a first-order estimate of its contribution).", gradient_based=True)
def gradient_x_input(model, token_ids: Sequence[int], target: AttributionTarget, *,
                     progress: ProgressCallback | None = None,
                     layer: str = EMBEDDING_LAYER) -> AttributionResult:
    """Gradient x input: score_i = x_i . d target / d x_i at `layer` (default: token embeddings).

    One forward and one backward pass. Positive: the vector pushes the target up, to first order.
    """
    check_layer(model, layer)
    grads = layer_gradients(model, token_ids, target, [layer], progress=progress)
    return gradient_result(model, "gradient_x_input", token_ids, target,
                           grads.gradient_x_input(layer), grads.target_value,
                           notes=layer_note(layer), options={"layer": layer})


@register_method("saliency",
                 "Saliency: the size (L2 norm) of the target's gradient at each token's "
                 "embedding: how sensitive the output is there, without a sign.",
                 gradient_based=True)
def saliency(model, token_ids: Sequence[int], target: AttributionTarget, *,
             progress: ProgressCallback | None = None,
             layer: str = EMBEDDING_LAYER) -> AttributionResult:
    """Saliency (Simonyan et al. 2013): score_i = || d target / d x_i ||_2 at `layer`.

    Always >= 0: it says where the output is sensitive, not which way a token pushes it.
    """
    check_layer(model, layer)
    grads = layer_gradients(model, token_ids, target, [layer], progress=progress)
    return gradient_result(model, "saliency", token_ids, target, grads.gradient_norm(layer),
                           grads.target_value, notes=layer_note(layer),
                           options={"layer": layer})


def baseline_vector(model, baseline: str) -> tuple[torch.Tensor, str]:
    """The vector that replaces each token's embedding in the baseline input, and its name."""
    if baseline not in BASELINES:
        raise invalid_choice("integrated-gradients baseline", baseline, BASELINES)
    weight = model.bridge.embed.original_component.weight
    if baseline == "zeros":
        return torch.zeros(weight.shape[1], device=weight.device, dtype=weight.dtype), "zero vectors"
    if baseline == "mean_embedding":
        return weight.mean(dim=0).detach(), "the mean token embedding"
    tokenizer = model.tokenizer
    token_id = tokenizer.pad_token_id if baseline == "pad" else tokenizer.eos_token_id
    if token_id is None:
        raise InvalidOptionError(
            f"{model.info.label}'s tokenizer has no {baseline} token; choose another baseline "
            f"({', '.join(b for b in BASELINES if b != baseline)}).")
    return weight[token_id].detach(), f"the {model.decode([token_id])!r} token"


def baseline_token_ids(model, token_ids: Sequence[int]) -> tuple[list[int], bool]:
    """Every position becomes the baseline slot, except a leading BOS (kept, as the model
    always sees one there); says whether it was kept."""
    keep_bos = token_ids[0] == model.tokenizer.bos_token_id and len(token_ids) > 1
    return ([token_ids[0]] if keep_bos else []) + [BASELINE_SLOT] * (len(token_ids) - keep_bos), keep_bos


def check_steps(n_steps: int, internal_batch_size: int | None, integration: str) -> None:
    """Refuse an integration rule, step count (2 to 4096) or internal batch size outside its range."""
    if integration not in INTEGRATION_METHODS:
        raise invalid_choice("integration rule", integration, INTEGRATION_METHODS)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 2 <= n_steps <= 4096:
        raise InvalidOptionError(f"The number of steps must be a whole number from 2 to 4096; "
                                 f"got {n_steps!r}.")
    if internal_batch_size is not None and (
            isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int)
            or internal_batch_size < 1):
        raise InvalidOptionError(f"internal_batch_size must be a positive whole number or None; "
                                 f"got {internal_batch_size!r}.")


def gradient_tokens_per_pass(model) -> int:
    """Token positions per batched gradient pass: what autograd keeps per token (each block's
    MLP input and output at d_mlp, and ~16 vectors of d_model: layer norms, q/k/v, z, residuals;
    float32) within GRADIENT_PASS_BYTES, and at most TOKENS_PER_PASS."""
    info = model.info
    per_token = info.n_layers * (4 * info.d_mlp + 16 * info.d_model) * 4
    return max(1, min(TOKENS_PER_PASS, GRADIENT_PASS_BYTES // per_token))


@register_method("integrated_gradients",
                 "Integrated gradients: the gradient averaged along the path from a baseline "
                 "input to the real one, times the difference; the scores add up to "
                 "f(input) - f(baseline).", gradient_based=True)
def integrated_gradients(model, token_ids: Sequence[int], target: AttributionTarget, *,
                         progress: ProgressCallback | None = None, baseline: str = "eos",
                         n_steps: int = 50, integration: str = "gausslegendre",
                         internal_batch_size: int | None = None,
                         layer: str = EMBEDDING_LAYER) -> AttributionResult:
    """Integrated gradients with captum's `LayerIntegratedGradients` at `layer`.

    The baseline input replaces every token's embedding (a leading BOS is kept) by `baseline`:
    the eos or pad token's embedding, zeros, or the mean of all token embeddings; at another
    layer, the baseline is that layer's activation on the baseline input. `n_steps` points of
    the `integration` rule (captum's), `internal_batch_size` of them per forward pass (default:
    about 4k tokens' worth). `extras["convergence_delta"]` = sum(scores) - (f(x) - f(baseline)):
    near 0 when enough steps were taken.
    """
    from captum.attr import LayerIntegratedGradients

    check_layer(model, layer)
    check_steps(n_steps, internal_batch_size, integration)
    vector, baseline_name = baseline_vector(model, baseline)
    ids = torch.tensor([list(token_ids)], device=model.device)
    baseline_ids, kept_bos = baseline_token_ids(model, token_ids)
    baselines = torch.tensor([baseline_ids], device=model.device)
    batch = internal_batch_size or max(1, min(n_steps, gradient_tokens_per_pass(model)
                                              // len(token_ids)))
    total = 1 + 2 + math.ceil(n_steps / batch)  # values, captum's two layer runs, the steps
    passes = {"ids": ids, "done": 0}

    def place_baseline(embedding, hook):
        slots = passes["ids"] == BASELINE_SLOT
        if slots.any():
            return torch.where(slots.unsqueeze(-1), vector.to(embedding.dtype), embedding)
        return None

    def forward(input_ids):
        passes["ids"] = input_ids
        logits = logits_from(bridge, input_ids.clamp(min=0), -1)[:, 0]
        passes["done"] += 1
        report(progress, min(passes["done"], total), total)
        return target_scalar(logits, target)

    with torch.enable_grad(), model.hooked(fwd_hooks=[(EMBEDDING_LAYER, place_baseline)]) as bridge, \
            fused_tanh_gelu(model):
        with torch.no_grad():
            values = forward(torch.cat([ids, baselines]))
        explainer = LayerIntegratedGradients(forward, bridge.hook_dict[layer])
        attributions = explainer.attribute(ids, baselines=baselines, n_steps=n_steps,
                                           method=integration, internal_batch_size=batch)
    scores = attributions[0].flatten(1).sum(dim=1).detach().float().cpu()
    target_value, baseline_value = float(values[0]), float(values[1])
    delta = float(scores.sum()) - (target_value - baseline_value)
    notes = [f"Baseline: every token's embedding replaced by {baseline_name}"
             + (" (BOS kept)." if kept_bos else "."),
             f"The scores add up to f(input) - f(baseline) = {target_value - baseline_value:.4g} "
             f"up to the convergence delta {delta:.2g} ({n_steps} steps)."]
    return gradient_result(
        model, "integrated_gradients", token_ids, target, scores, target_value, baseline_value,
        extras={"convergence_delta": delta, "n_steps": n_steps},
        notes=[*notes, *layer_note(layer)],
        options={"baseline": baseline, "n_steps": n_steps, "integration": integration,
                 "internal_batch_size": batch, "layer": layer})


GRADIENT_RULES = {"gradient_x_input": gradient_x_input, "saliency": saliency,
                  "integrated_gradients": integrated_gradients}


@register_method("custom_gradient",
                 "Custom gradient attribution: gradient x activation, saliency or integrated "
                 "gradients at a layer you choose (e.g. a block's residual stream).",
                 gradient_based=True)
def custom_gradient(model, token_ids: Sequence[int], target: AttributionTarget, *,
                    progress: ProgressCallback | None = None,
                    layer: str = "blocks.0.hook_resid_post",
                    rule: str = "gradient_x_input") -> AttributionResult:
    """A gradient `rule` (gradient_x_input, saliency, integrated_gradients) at `layer`.

    The score at a position is what that position's activation at `layer` contributes; it mixes
    in whatever earlier layers moved there from other tokens.
    """
    if rule not in GRADIENT_RULES:
        raise invalid_choice("gradient rule", rule, tuple(GRADIENT_RULES))
    result = GRADIENT_RULES[rule](model, token_ids, target, progress=progress, layer=layer)
    return AttributionResult(
        method="custom_gradient", model_name=result.model_name, tokens=result.tokens,
        token_ids=result.token_ids, scores=result.scores, target=result.target,
        target_value=result.target_value, baseline_value=result.baseline_value,
        extras=result.extras, notes=result.notes, options={**result.options, "rule": rule})
