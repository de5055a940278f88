"""Attribution patching (Nanda 2023): every patch of a site estimated at once from one gradient.

The effect of patching an activation is approximated to first order, (source activation -
receiving activation) . d metric / d activation, with the gradient taken in the run patched
into: one clean run, one corrupted run and one backward pass, whatever the number of
components. It is exact for a metric linear in the activation and drifts where attention
patterns or layer norms move a lot; compare it with exact patching (`compare_methods`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from interp.errors import UnreachableSiteError
from interp.patching.architecture import ATTRIBUTION, check_architecture
from interp.patching.results import (
    RESIDUAL_SITES,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    check_direction,
    check_metric_for,
    check_site,
    metric_from_logits,
)
from interp.patching.runs import (
    baseline_runs,
    canonical_hook_name,
    corrupted_run_tokens,
    hook_name,
    patching_result,
    result_shape,
    run_options,
)


def attribution_patch(model, inputs: PatchingInputs, metric: PatchingMetric,
                      site: str = "resid_pre", granularity: str = "layer_pos",
                      direction: str = "denoising") -> PatchingResult:
    """Attribution patching (Nanda 2023): a first-order estimate of every patch at once.

    Denoising: values = corrupted_value + (clean_act - corrupted_act) . d metric / d act, the
    gradient taken in the corrupted run (noising swaps the runs). One clean run, one corrupted
    run with a backward pass, whatever the number of components. It is exact for a metric linear
    in the activation and drifts where attention patterns or layer norms move a lot.
    """
    check_site(site, granularity)
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    check_architecture(model, ATTRIBUTION)
    info = model.info
    n_layers, n_heads, n_pos = info.n_layers, info.n_heads, inputs.n_positions
    site_names = [hook_name(site, layer) for layer in range(n_layers)]
    # hook_resid_mid sits on ln2's input; the residual branch's gradient arrives at resid_post.
    extra_grad_names = ([hook_name("resid_post", layer) for layer in range(n_layers)]
                        if site == "resid_mid" else [])

    runs = baseline_runs(model, inputs, metric, site_names)
    receiving, source = runs.receiving_and_source(direction)
    receiving_value = float(runs.receiving_scores(direction).mean())
    tokens, extra_hooks = ((corrupted_run_tokens(inputs), runs.noise_hooks)
                           if direction == "denoising" else (inputs.clean_tokens, ()))
    gradients = metric_gradients(model, tokens, metric, runs.clean_log_probs,
                                 site_names + extra_grad_names, extra_hooks)

    per_layer = []
    for layer, name in enumerate(site_names):
        gradient = gradients[name]
        if extra_grad_names:
            gradient = gradient + gradients[extra_grad_names[layer]]
        contribution = (source[name] - receiving[name]) * gradient
        per_layer.append(reduce_contribution(contribution, site, granularity))
    values = receiving_value + torch.stack(per_layer)
    values = values.view(result_shape(granularity, n_layers, n_heads, n_pos))
    options = run_options(inputs, inputs.n_prompts)
    options["approximation"] = ("first order: (source - receiving activation) x gradient of the "
                                "metric in the receiving run")
    return patching_result(model, inputs, metric, runs, values, method="attribution",
                           site=site, granularity=granularity, direction=direction,
                           options=options)


def metric_gradients(model, tokens: torch.Tensor, metric: PatchingMetric,
                     clean_log_probs: torch.Tensor, names: Sequence[str], extra_hooks=()) -> dict:
    """d (mean metric) / d activation at each hook in `names`, in one forward and one backward."""
    activations: dict[str, torch.Tensor] = {}

    def track_from_here(residual, hook):
        # Parameters are frozen, so the graph starts at the first residual stream.
        return residual.detach().requires_grad_(True)

    def keep(activation, hook):
        # Returned, not just stored: some hooks (hook_z, hook_q, ...) see a reshaped copy that
        # only joins the graph when it is handed back. A copy for ln2's input (hook_resid_mid)
        # keeps its gradient to the MLP branch; the residual branch's comes from resid_post.
        if hook.name.endswith("ln2.hook_in"):
            activation = activation.clone()
        activations[hook.name] = activation
        return activation

    canonical = {name: canonical_hook_name(model, name) for name in names}
    hooks = list(extra_hooks) + [(hook_name("resid_pre", 0), track_from_here)]
    hooks += [(name, keep) for name in dict.fromkeys(names)]
    with torch.enable_grad(), model.hooked(hooks) as bridge:
        logits = bridge(tokens.to(model.info.device))[:, -1]
        value = metric_from_logits(metric, logits, clean_log_probs).mean()
        wanted = list(dict.fromkeys(canonical.values()))
        missing = [c for c in wanted if c not in activations]
        if missing:
            raise unreachable(missing, "its hook never ran in the forward pass")
        if not value.requires_grad:
            raise unreachable(wanted, "the metric's graph reaches none of them")
        grads = torch.autograd.grad(value, [activations[c] for c in wanted], allow_unused=True)
    cut_off = [c for c, g in zip(wanted, grads, strict=True) if g is None]
    if cut_off:
        raise unreachable(cut_off, "nothing computed from it reaches the metric in the graph")
    by_canonical = {c: g.detach() for c, g in zip(wanted, grads, strict=True)}
    return {name: by_canonical[canonical[name]] for name in names}


def unreachable(names: Sequence[str], why: str) -> UnreachableSiteError:
    """The error for sites with no gradient: their attribution is undefined, not zero."""
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return UnreachableSiteError(
        f"Attribution patching can't reach {shown}: {why}, so its estimate would be undefined "
        "(not zero). Use exact patching (patch) for this site.")


def reduce_contribution(contribution: torch.Tensor, site: str, granularity: str) -> torch.Tensor:
    """Sum a per-element contribution over prompts and the axes a component spans."""
    total = contribution.sum(dim=0)
    if site in RESIDUAL_SITES:  # [pos, d_model]
        per_position = total.sum(-1)
        return per_position if granularity == "layer_pos" else per_position.sum()
    if site == "pattern":  # [head, dest, src]
        per_destination = total.sum(-1)
        return per_destination if granularity == "head_pos" else per_destination.sum(-1)
    per_head_position = total.sum(-1).T  # [pos, head, d_head] -> [head, pos]
    return per_head_position if granularity == "head_pos" else per_head_position.sum(-1)
