"""Ablation: what does a behaviour lose when some attention heads stop carrying information?

A head is ablated by replacing its output z (per head, before W_O) at every position after BOS:
by its mean over reference prompts (mean ablation, the usual choice: it removes what is
specific to the prompt and keeps the head's average contribution), by zero (zero ablation, which
also removes that average and so can push activations off their usual range), or by its value
on another prompt (resample ablation, Chan et al. 2022's causal scrubbing). The metric with the
heads ablated, against the metric without, says how much the behaviour needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.patching.results import PatchingMetric, check_heads_exist, metric_from_logits
from interp.patching.runs import hook_name

ABLATION_KINDS = ("mean", "zero", "resample")

Head = tuple[int, int]
Hook = tuple[str, Callable]


@dataclass(frozen=True)
class AblationResult:
    """The metric (mean over prompts) with `heads` ablated by `kind`, and without."""

    model_name: str
    kind: str
    heads: tuple[Head, ...]
    metric_name: str
    clean_value: float
    ablated_value: float

    @property
    def fraction_of_clean(self) -> float:
        """ablated / clean: 1 means the heads don't matter, 0 that the behaviour is gone."""
        return self.ablated_value / self.clean_value if self.clean_value else float("nan")


def z_mean_recorder(n_layers: int, mask: torch.Tensor) -> tuple[list[Hook], Callable[[], torch.Tensor]]:
    """Hooks that sum each head's z over the positions where `mask` [batch, pos] is true, and
    a function giving the means [n_layers, n_heads, d_head] once a forward pass has run."""
    sums: dict[int, torch.Tensor] = {}

    def record(layer: int) -> Callable:
        def save_sum(z: torch.Tensor, hook) -> None:
            weights = mask.to(z.device)[:, :, None, None]
            sums[layer] = (z.float() * weights).sum((0, 1))
        return save_sum

    def means() -> torch.Tensor:
        return torch.stack([sums[layer] for layer in range(n_layers)]).cpu() / mask.sum()

    return [(hook_name("z", layer), record(layer)) for layer in range(n_layers)], means


def positions_after_bos(tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mask [batch, pos]: true at real positions after BOS (right padding beyond `lengths`)."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    lengths = (torch.full((tokens.shape[0],), tokens.shape[1], device=tokens.device)
               if lengths is None else torch.as_tensor(lengths, device=tokens.device))
    return (positions < lengths[:, None]) & (positions > 0)


@torch.no_grad()
def head_means(model, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of every head's z over `tokens` [batch, pos] (BOS first) and their positions after
    BOS, ignoring right padding past `lengths`: [n_layers, n_heads, d_head]."""
    hooks, means = z_mean_recorder(model.info.n_layers, positions_after_bos(tokens, lengths))
    with model.hooked(hooks) as bridge:
        bridge(tokens.to(model.info.device))
    return means()


def ablation_hooks(heads: Sequence[Head], kind: str = "mean", means: torch.Tensor | None = None,
                   replacement_z: dict[int, torch.Tensor] | None = None) -> list[Hook]:
    """Hooks setting z of each (layer, head) in `heads` at every position but BOS.

    kind "mean": to `means` [n_layers, n_heads, d_head] (see `head_means`); "zero": to 0;
    "resample": to `replacement_z[layer]` [batch, pos, n_heads, d_head], the z of other prompts
    of the same shape (see `ablate`).
    """
    if kind not in ABLATION_KINDS:
        raise invalid_choice("ablation", kind, ABLATION_KINDS)
    if kind == "mean" and means is None:
        raise InvalidOptionError("Mean ablation needs the heads' means: pass means=head_means(...).")
    if kind == "resample" and replacement_z is None:
        raise InvalidOptionError("Resample ablation needs the other prompts' z: pass replacement_z.")
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    hooks = []
    for layer, layer_heads in sorted(by_layer.items()):
        def replace(z: torch.Tensor, hook, layer: int = layer, layer_heads: tuple = tuple(layer_heads)):
            z = z.clone()
            chosen = list(layer_heads)
            if kind == "mean":
                z[:, 1:, chosen] = means[layer, chosen].to(z.dtype).to(z.device)  # type: ignore[index]  # checked above
            elif kind == "zero":
                z[:, 1:, chosen] = 0
            else:
                z[:, 1:, chosen] = replacement_z[layer][:, 1:, chosen].to(z.dtype).to(z.device)  # type: ignore[index]  # checked above
            return z
        hooks.append((hook_name("z", layer), replace))
    return hooks


@torch.no_grad()
def ablate(model, tokens: torch.Tensor, metric: PatchingMetric, heads: Sequence[Head],
           kind: str = "mean", means: torch.Tensor | None = None,
           resample_tokens: torch.Tensor | None = None) -> AblationResult:
    """The metric on `tokens` [prompt, pos] with `heads` ablated, and without.

    Mean ablation uses `means` if given, else the heads' means over `tokens` themselves;
    resample ablation takes z from `resample_tokens` (as many prompts, as many tokens).
    """
    info = model.info
    chosen = [(int(layer), int(head)) for layer, head in heads]
    check_heads_exist(chosen, info.n_layers, info.n_heads)
    if len(metric.correct_ids) != tokens.shape[0]:
        raise InvalidOptionError(
            f"The metric has {len(metric.correct_ids)} answer token(s) but there are "
            f"{tokens.shape[0]} prompt(s); give one answer per prompt.")
    replacement_z = None
    if kind == "mean" and means is None:
        means = head_means(model, tokens)
    if kind == "resample":
        if resample_tokens is None or resample_tokens.shape != tokens.shape:
            raise InvalidOptionError(
                "Resample ablation needs resample_tokens of the same shape as the prompts "
                f"{tuple(tokens.shape)}.")
        replacement_z = {}

        def keep(z, hook):
            replacement_z[int(hook.name.split(".")[1])] = z.detach().clone()
        with model.hooked([(hook_name("z", layer), keep) for layer, _ in chosen]) as bridge:
            bridge(resample_tokens.to(info.device))
    device_tokens = tokens.to(info.device)
    with model.hooked() as bridge:
        clean_logits = bridge(device_tokens)[:, -1]
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    with model.hooked(ablation_hooks(chosen, kind, means, replacement_z)) as bridge:
        ablated_logits = bridge(device_tokens)[:, -1]
    clean = float(metric_from_logits(metric, clean_logits, clean_log_probs).mean())
    ablated = float(metric_from_logits(metric, ablated_logits, clean_log_probs).mean())
    return AblationResult(model_name=info.name, kind=kind, heads=tuple(chosen),
                          metric_name=metric.name, clean_value=clean, ablated_value=ablated)
