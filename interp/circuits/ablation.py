"""Node-level circuits: ablate whole heads and MLPs, and find a small set by iterative pruning.

Ablating a component replaces its output, for every receiver at every position, by the
ablation's replacement (resample: the corrupted twin's; mean: the reference prompts' mean;
zero). `find_circuit` starts from every head and MLP and removes, one at a time, the component
whose removal changes the metric least, while the remaining set keeps node-level faithfulness
F = (m(C) - m(none)) / (m(all) - m(none)) at or above the threshold (m(none): every head and MLP
ablated); each step evaluates all candidates in one batched pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp.circuits.data import CircuitData, pair_metric
from interp.circuits.engine import Gpt2Weights, gpt2_weights, rewritten_logits
from interp.circuits.graph import EdgeGraph
from interp.circuits.replacements import replacement_outputs, sender_outputs
from interp.circuits.scores import Progress
from interp.errors import InvalidOptionError, invalid_choice


def component_names(components, graph: EdgeGraph) -> tuple[str, ...]:
    """Components as names ("L0H3", "MLP1"), from names or (layer, head) pairs."""
    names = []
    for component in components:
        if isinstance(component, str):
            name = component
        else:
            layer, head = component
            name = f"L{int(layer)}H{int(head)}"
        if name == "embed" or name not in graph.sender_names:
            graph.sender_index(name if name != "embed" else "?")
        names.append(name)
    return tuple(dict.fromkeys(names))


def node_masks(graph: EdgeGraph, ablated_sets: Sequence[Sequence[str]]) -> torch.Tensor:
    """Edge masks [set, sender, receiver, pos]: every edge out of each set's components."""
    masks = torch.zeros((len(ablated_sets), graph.n_senders, graph.n_receivers, graph.n_pos),
                        dtype=torch.bool)
    valid = graph.valid[:, :, None]
    for row, names in enumerate(ablated_sets):
        for name in names:
            sender = graph.sender_index(name)
            masks[row, sender] = valid[sender]
    return masks


@torch.no_grad()
def ablated_metrics(weights: Gpt2Weights, data: CircuitData, ablated_sets, kind: str,
                    reference_tokens: torch.Tensor | None = None,
                    replacement: torch.Tensor | None = None, clean=None, check=None,
                    mean_scope: str = "position") -> torch.Tensor:
    """The metric [set, pair] on the clean prompts with each set's components ablated
    (`clean`: the clean run's sender outputs and logits, when already computed)."""
    device = weights.wte.device
    graph = weights.graph(data.n_pos)
    clean_tokens = data.clean_tokens.to(device)
    clean_outputs, clean_logits = clean if clean is not None else sender_outputs(weights, clean_tokens)
    if replacement is None:
        replacement = replacement_outputs(weights, data, kind, reference_tokens, clean_outputs,
                                          mean_scope)
    masks = node_masks(graph, ablated_sets).to(device)
    n_sets, n_pairs = masks.shape[0], data.n_pairs
    # Row r is set r // n_pairs on pair r % n_pairs: the per-pair tensors cycle, not copied.
    logits = rewritten_logits(weights, weights.wte[clean_tokens], masks, replacement, check,
                              mask_repeats=n_pairs)
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    return pair_metric(data.metric, logits, clean_log_probs).view(n_sets, n_pairs).cpu()


def ablate(model, data: CircuitData, components, kind: str = "mean",
           reference_tokens: torch.Tensor | None = None, mean_scope: str = "position") -> float:
    """The task metric (mean over pairs) with `components` ("L0H3", "MLP1" or (layer, head))
    ablated by `kind` ("mean", "zero" or "resample"; see `replacements` for `mean_scope`)."""
    weights = gpt2_weights(model)
    names = component_names(components, weights.graph(data.n_pos))
    return float(ablated_metrics(weights, data, [names], kind, reference_tokens,
                                 mean_scope=mean_scope)[0].mean())


@dataclass(frozen=True)
class NodeCircuit:
    """The components kept by iterative pruning, and the pruning curve.

    `curve[i]` = (components kept, node-level F) after the i-th removal (the first entry is the
    whole model); `removed` lists components in the order they were removed.
    """

    model_name: str
    task_name: str
    kind: str
    metric_name: str
    threshold: float
    candidates: str
    components: tuple[str, ...]
    faithfulness: float
    removed: tuple[str, ...]
    curve: tuple[tuple[int, float], ...]
    full_value: float
    empty_value: float


CANDIDATES = ("heads_and_mlps", "heads")


def find_circuit(model, data: CircuitData, threshold: float = 0.8, kind: str = "mean",
                 reference_tokens: torch.Tensor | None = None, candidates: str = "heads_and_mlps",
                 mean_scope: str = "position", progress: Progress | None = None) -> NodeCircuit:
    """Iterative pruning (the founding document's `iterative_pruning`): from every head and MLP
    (or every head, MLPs always kept, with `candidates="heads"`), remove the component whose
    removal changes the metric least while F stays >= `threshold`."""
    if candidates not in CANDIDATES:
        raise invalid_choice("pruning candidates", candidates, CANDIDATES)
    if not 0 < threshold <= 1:
        raise InvalidOptionError(f"The faithfulness threshold must be in (0, 1]; got {threshold}.")
    weights = gpt2_weights(model)
    graph = weights.graph(data.n_pos)
    device = weights.wte.device
    everything = tuple(name for name in graph.components()
                       if candidates == "heads_and_mlps" or not name.startswith("MLP"))
    clean = sender_outputs(weights, data.clean_tokens.to(device))
    replacement = replacement_outputs(weights, data, kind, reference_tokens, clean[0], mean_scope)
    baseline = ablated_metrics(weights, data, [(), everything], kind, replacement=replacement,
                               clean=clean)
    full, empty = float(baseline[0].mean()), float(baseline[1].mean())
    gap = full - empty
    if gap == 0:
        raise InvalidOptionError(
            "Ablating every head and MLP leaves the metric unchanged, so no circuit can be "
            "measured on this task; choose another task or ablation.")
    kept, removed, curve = list(everything), [], [(len(everything), 1.0)]
    current = full
    while kept:
        trials = [[c for c in everything if c not in kept] + [c] for c in kept]
        values = ablated_metrics(weights, data, trials, kind, replacement=replacement,
                                 clean=clean).mean(1)
        closest = int(torch.argmin((values - current).abs()))
        value = float(values[closest])
        if (value - empty) / gap < threshold:
            break
        removed.append(kept.pop(closest))
        current = value
        curve.append((len(kept), (value - empty) / gap))
        if progress is not None:
            progress(len(removed) / len(everything), f"Pruning: {len(kept)} components left")
    return NodeCircuit(
        model_name=data.model_name, task_name=data.task_name, kind=kind,
        metric_name=data.metric.name, threshold=threshold, candidates=candidates, components=tuple(kept),
        faithfulness=(current - empty) / gap, removed=tuple(removed), curve=tuple(curve),
        full_value=full, empty_value=empty)
