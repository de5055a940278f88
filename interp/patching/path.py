"""Path patching (Wang et al. 2022): a sender head's effect through chosen receivers only.

Patching a head's output changes everything downstream of it; path patching asks how much of
that effect travels through particular later heads' queries, keys or values (or straight to
the logits). Every other head's output is frozen at the run patched into, so only the path
sender -> receivers carries the patch; values are [layer, head] over senders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.patching.architecture import PATH, check_architecture
from interp.patching.results import (
    FINAL_RESIDUAL,
    RECEIVER_INPUTS,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    check_batch_size,
    check_direction,
    check_heads_exist,
    check_metric_for,
)
from interp.patching.runs import (
    ProgressCallback,
    baseline_runs,
    chunks,
    hook_name,
    make_scorer,
    patched_copies,
    patching_result,
    run_options,
    tokens_per_pass,
)


def check_receivers(receivers, receiver_input: str, n_layers: int, n_heads: int) -> Any:
    """Validate path-patching receivers: `resid_final` (returned as that string), or (layer, head)
    pairs in range (returned as a tuple of int pairs)."""
    if isinstance(receivers, str):
        if receivers != FINAL_RESIDUAL:
            raise InvalidOptionError(
                f"Unknown receivers {receivers!r}: give a list of (layer, head) pairs or "
                f"{FINAL_RESIDUAL!r} for the final residual stream.")
        return FINAL_RESIDUAL
    if receiver_input not in RECEIVER_INPUTS:
        raise invalid_choice("receiver input", receiver_input, RECEIVER_INPUTS)
    try:
        pairs = tuple(sorted({(int(layer), int(head)) for layer, head in receivers}))
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(
            "Receivers must be (layer, head) pairs, e.g. [(9, 6), (9, 9)], or "
            f"{FINAL_RESIDUAL!r}.") from error
    if not pairs:
        raise InvalidOptionError(f"Choose at least one receiver head, or {FINAL_RESIDUAL!r}.")
    check_heads_exist(pairs, n_layers, n_heads, "Receiver heads")
    return pairs


def patch_path(model, inputs: PatchingInputs, metric: PatchingMetric, receivers,
               receiver_input: str = "q", direction: str = "denoising",
               batch_size: int | None = None,
               progress: ProgressCallback | None = None) -> PatchingResult:
    """Path patching (Wang et al. 2022): each sender head's effect through the receivers only.

    For every sender head (layer, head) its output z is patched (from the clean run when
    denoising), every other head's output is frozen at its value in the run patched into, MLPs
    are recomputed, and the effect is allowed to reach the metric only through `receivers`:
    either a list of (layer, head) whose `receiver_input` (q, k or v) is recomputed and patched
    into a fresh run, or "resid_final" for the final residual stream (the logits). Values are
    [layer, head] over senders; a sender at or after the last receiver's layer can't reach any
    receiver and gets NaN (values and normalized).
    """
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    check_batch_size(batch_size)
    check_architecture(model, PATH)
    info = model.info
    n_layers, n_heads, n_pos, n_prompts = info.n_layers, info.n_heads, inputs.n_positions, inputs.n_prompts
    chosen_receivers = check_receivers(receivers, receiver_input, n_layers, n_heads)
    to_final = chosen_receivers == FINAL_RESIDUAL
    last_receiver_layer = n_layers if to_final else max(layer for layer, _ in chosen_receivers)
    sequences = tokens_per_pass(batch_size, n_pos)
    senders_per_pass = max(1, sequences // n_prompts)
    values = torch.full((n_layers, n_heads), float("nan"))
    names = [hook_name("resid_pre", layer) for layer in range(n_layers)]
    names += [hook_name("z", layer) for layer in range(n_layers)]

    runs = baseline_runs(model, inputs, metric, names)
    receiving, source = runs.receiving_and_source(direction)
    score = make_scorer(model, metric, runs.clean_log_probs)
    sender_chunks = [(layer, heads) for layer in range(min(last_receiver_layer, n_layers))
                     for heads in chunks(list(range(n_heads)), senders_per_pass)]
    total = sum(len(heads) for _, heads in sender_chunks)
    done = 0
    for layer, heads in sender_chunks:
        if to_final:
            scores = path_to_final(model, layer, heads, receiving, source, n_prompts, score)
        else:
            scores = path_to_heads(model, layer, heads, chosen_receivers, receiver_input,
                                   receiving, source, n_prompts, score)
        values[layer, heads[0]:heads[-1] + 1] = scores.mean(dim=1)
        done += len(heads)
        if progress is not None:
            progress(done, total)

    options = run_options(inputs, sequences)
    options.update(kind="path", receivers=(FINAL_RESIDUAL if to_final else
                                           [list(pair) for pair in chosen_receivers]),
                   receiver_input=None if to_final else receiver_input,
                   frozen="all other heads' outputs (z); MLPs recomputed")
    return patching_result(model, inputs, metric, runs, values, method="exact", site="z",
                           granularity="head", direction=direction, options=options)


def frozen_heads_hooks(sender_layer: int, heads: Sequence[int], up_to_layer: int,
                       receiving: dict, source: dict, n_prompts: int) -> list:
    """Hooks setting every head's z to the receiving run's, but each sender's from `source`."""
    hooks = []
    for layer in range(sender_layer, up_to_layer):
        name = hook_name("z", layer)
        frozen = receiving[name].repeat(len(heads), 1, 1, 1)
        if layer == sender_layer:
            frozen = patched_copies(frozen, source[name], [(slice(None), h) for h in heads],
                                    n_prompts)
        hooks.append((name, lambda activation, hook, frozen=frozen: frozen))
    return hooks


@torch.no_grad()
def path_to_final(model, sender_layer: int, heads: Sequence[int], receiving: dict, source: dict,
                  n_prompts: int, score) -> torch.Tensor:
    """Path-patched metric scores of `heads` of one sender layer through the final residual stream only."""
    n_layers = model.info.n_layers
    hooks = frozen_heads_hooks(sender_layer, heads, n_layers, receiving, source, n_prompts)
    hidden = receiving[hook_name("resid_pre", sender_layer)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        hidden = run_block_range(bridge, hidden, sender_layer, n_layers)
        return score(hidden[:, -1])


@torch.no_grad()
def path_to_heads(model, sender_layer: int, heads: Sequence[int], receivers: tuple,
                  receiver_input: str, receiving: dict, source: dict, n_prompts: int,
                  score) -> torch.Tensor:
    """Two passes: senders patched and other heads frozen to get the receivers' inputs, then a
    fresh receiving run with only those receiver inputs patched in."""
    n_layers = model.info.n_layers
    reachable = [(layer, head) for layer, head in receivers if layer > sender_layer]
    receiver_layers = sorted({layer for layer, _ in reachable})
    captured: dict[int, torch.Tensor] = {}

    def capture(activation, hook):
        captured[int(hook.name.split(".")[1])] = activation
    hooks = frozen_heads_hooks(sender_layer, heads, receiver_layers[-1] + 1, receiving, source,
                               n_prompts)
    hooks += [(hook_name(receiver_input, layer), capture) for layer in receiver_layers]
    hidden = receiving[hook_name("resid_pre", sender_layer)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        run_block_range(bridge, hidden, sender_layer, receiver_layers[-1] + 1)

    patch_receivers = receiver_patcher(reachable, captured)
    hooks = [(hook_name(receiver_input, layer), patch_receivers) for layer in receiver_layers]
    first = receiver_layers[0]
    hidden = receiving[hook_name("resid_pre", first)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        hidden = run_block_range(bridge, hidden, first, n_layers)
        return score(hidden[:, -1])


@dataclass(frozen=True)
class SenderSetPath:
    """Path patching of a whole sender set at once: the metric when only the receivers'
    `receiver_input` sees every sender's patched output together, beside the two baselines."""

    senders: tuple[tuple[int, int], ...]
    receivers: tuple[tuple[int, int], ...]
    receiver_input: str
    direction: str
    metric_name: str
    value: float
    clean_value: float
    corrupted_value: float

    @property
    def normalized(self) -> float:
        """0 = as the run patched into, 1 = as the run patched from (denoising: clean)."""
        gap = self.clean_value - self.corrupted_value
        return (self.value - self.corrupted_value) / gap if gap else float("nan")

    @property
    def share_lost(self) -> float:
        """Share of the clean-minus-corrupted gap lost: (clean - value) / (clean - corrupted)."""
        return 1.0 - self.normalized


@torch.no_grad()
def patch_path_from(model, inputs: PatchingInputs, metric: PatchingMetric,
                    senders: Sequence[tuple[int, int]], receivers: Sequence[tuple[int, int]],
                    receiver_input: str = "k", direction: str = "noising") -> SenderSetPath:
    """Path patching (Wang et al. 2022) of a set of senders together into receiver heads.

    Every head's output z is frozen at the run patched into, except the senders', taken from
    the other run (all at once); MLPs are recomputed; each receiver's `receiver_input` (q, k or
    v) is read there and patched into a fresh run. A receiver sees only senders in earlier
    layers. Unlike `patch_path`, which scores each sender alone, this scores the set, whose
    paths need not add up.
    """
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    check_architecture(model, PATH)
    info = model.info
    chosen_receivers = check_receivers(receivers, receiver_input, info.n_layers, info.n_heads)
    if chosen_receivers == FINAL_RESIDUAL:
        raise InvalidOptionError("Give receiver heads as (layer, head) pairs.")
    try:
        chosen_senders = tuple(sorted({(int(layer), int(head)) for layer, head in senders}))
    except (TypeError, ValueError) as error:
        raise InvalidOptionError("Senders must be (layer, head) pairs, e.g. [(0, 1)].") from error
    if not chosen_senders:
        raise InvalidOptionError("Choose at least one sender head.")
    check_heads_exist(chosen_senders, info.n_layers, info.n_heads, "Sender heads")
    first_sender = chosen_senders[0][0]
    receiver_layers = sorted({layer for layer, _ in chosen_receivers if layer > first_sender})
    names = [hook_name("resid_pre", layer) for layer in range(info.n_layers)]
    names += [hook_name("z", layer) for layer in range(info.n_layers)]
    runs = baseline_runs(model, inputs, metric, names)
    receiving, source = runs.receiving_and_source(direction)
    score = make_scorer(model, metric, runs.clean_log_probs)
    result: dict[str, Any] = {"senders": chosen_senders, "receivers": chosen_receivers,
              "receiver_input": receiver_input, "direction": direction,
              "metric_name": metric.name, "clean_value": runs.clean_value,
              "corrupted_value": runs.corrupted_value}
    if not receiver_layers:  # every sender sits at or after every receiver: no path
        value = float(runs.receiving_scores(direction).mean())
        return SenderSetPath(value=value, **result)

    def frozen(name: str, layer: int):
        patched = receiving[name].clone()
        for sender_layer, head in chosen_senders:
            if sender_layer == layer:
                patched[:, :, head] = source[name][:, :, head]
        return lambda activation, hook: patched

    captured: dict[int, torch.Tensor] = {}

    def capture(activation, hook):
        captured[int(hook.name.split(".")[1])] = activation

    stop = receiver_layers[-1] + 1
    hooks = [(hook_name("z", layer), frozen(hook_name("z", layer), layer))
             for layer in range(first_sender, stop)]
    hooks += [(hook_name(receiver_input, layer), capture) for layer in receiver_layers]
    with model.hooked(hooks) as bridge:
        run_block_range(bridge, receiving[hook_name("resid_pre", first_sender)], first_sender,
                        stop)

    patch_receivers = receiver_patcher(chosen_receivers, captured)
    hooks = [(hook_name(receiver_input, layer), patch_receivers) for layer in receiver_layers]
    first = receiver_layers[0]
    with model.hooked(hooks) as bridge:
        hidden = run_block_range(bridge, receiving[hook_name("resid_pre", first)], first,
                                 info.n_layers)
        value = float(score(hidden[:, -1]).mean())
    return SenderSetPath(value=value, **result)


def receiver_patcher(receivers: Sequence[tuple[int, int]], captured: dict[int, torch.Tensor]):
    """A hook writing each receiver head's captured input (q, k or v) over the activation."""
    def patch_receivers(activation, hook):
        layer = int(hook.name.split(".")[1])
        patched = activation.clone()
        for receiver_layer, head in receivers:
            if receiver_layer == layer:
                patched[:, :, head] = captured[layer][:, :, head]
        return patched
    return patch_receivers


def run_block_range(bridge, hidden: torch.Tensor, first: int, stop: int) -> torch.Tensor:
    """The residual after blocks first..stop-1, from `hidden` entering block `first`."""
    for block in bridge.blocks[first:stop]:
        output = block(hidden)
        hidden = output[0] if isinstance(output, tuple) else output
    return hidden
