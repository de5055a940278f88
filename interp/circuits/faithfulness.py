"""Faithfulness: how much of the task a circuit does alone, its curve over circuit sizes, CPR, CMD.

A circuit C is run with every edge outside it ablated (its receivers read the replacement
outputs of the ablation named: resample, mean or zero). As in the MIB benchmark (Mueller et al.
2025), F = (m(C) - m(empty)) / (m(M) - m(empty)), with M the whole model and the empty circuit
every edge ablated; completeness is F of the complement alone. Under resample ablation m(empty)
is the corrupted run's metric, so F equals TransformerLens' `recovered`; under mean or zero
ablation TransformerLens still divides by the clean/corrupted gap. The curve measures F at 10
sizes (0.1 % to 100 % of edges); CPR is the area under it and CMD the area between it and 1,
both over log edge count scaled to [0, 1]. All circuits and pairs of a batch run in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from interp.circuits.data import CircuitData, pair_metric
from interp.circuits.engine import Gpt2Weights, gpt2_weights, rewritten_logits
from interp.circuits.replacements import replacement_outputs, sender_outputs
from interp.circuits.scores import EdgeScores, Progress
from interp.circuits.selection import Circuit, top_fraction_keeps

CURVE_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
NORMALISATION = ("F = (m(C) - m(empty)) / (m(M) - m(empty)), m(empty) = every edge ablated "
                 "(MIB)")
BOOTSTRAP_SAMPLES = 500


@dataclass(frozen=True)
class CircuitMetrics:
    """Per-pair metric of each circuit [circuit, pair], of the whole model and of the empty
    circuit [pair], under one ablation."""

    kind: str
    circuits: torch.Tensor
    full: torch.Tensor
    empty: torch.Tensor

    def faithfulness(self, pairs: torch.Tensor | None = None) -> torch.Tensor:
        """F of each circuit [circuit], from the pairs' mean metric (all pairs unless given)."""
        chosen = slice(None) if pairs is None else pairs
        full, empty = self.full[chosen].mean(), self.empty[chosen].mean()
        gap = full - empty
        if float(gap) == 0:
            return torch.full((self.circuits.shape[0],), float("nan"))
        return (self.circuits[:, chosen].mean(1) - empty) / gap

    def bootstrap(self, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> torch.Tensor:
        """95 % percentile intervals [circuit, 2] of F over pairs resampled with replacement."""
        n_pairs = self.full.shape[0]
        generator = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, n_pairs, (samples, n_pairs), generator=generator)
        values = torch.stack([self.faithfulness(draw) for draw in draws])
        return torch.nanquantile(values, torch.tensor([0.025, 0.975]), dim=0).T


def circuit_metrics(weights: Gpt2Weights, data: CircuitData, keeps: torch.Tensor,
                    kind: str = "resample", reference_tokens: torch.Tensor | None = None,
                    progress: Progress | None = None) -> CircuitMetrics:
    """The metric with every edge outside each keep-mask [circuit, sender, receiver, pos] ablated
    by `kind`, all circuits x pairs as rows of batched passes, plus the whole and empty models."""
    device = weights.wte.device
    clean_tokens = data.clean_tokens.to(device)
    # Zero ablation reads the first clean row's start token; nothing else reads clean outputs.
    clean_outputs, clean_logits = sender_outputs(weights, clean_tokens, kept_rows=1)
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    replacement = replacement_outputs(weights, data, kind, reference_tokens, clean_outputs)
    del clean_outputs  # the rewritten passes read only the replacements
    graph = weights.graph(data.n_pos)
    valid = graph.valid[None, :, :, None].to(device)
    keeps = keeps.to(device)
    masks = torch.cat([valid & ~keeps, valid.expand(1, -1, -1, data.n_pos)])
    n_sets, n_pairs = masks.shape[0], data.n_pairs
    # Row r of the passes is mask r // n_pairs on pair r % n_pairs: neither is copied per row.
    embeds = weights.wte[clean_tokens]

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / total, f"Faithfulness: {done} of {total} ablated runs")

    # A mask that ablates nothing is the clean run itself (the whole circuit): no pass needed.
    ablates = masks.flatten(1).any(1)
    logits = clean_logits.repeat(n_sets, 1)
    if bool(ablates.any()):
        rows = ablates.repeat_interleave(n_pairs)
        logits[rows] = rewritten_logits(weights, embeds, masks[ablates], replacement,
                                        check=report, mask_repeats=n_pairs)
    values = pair_metric(data.metric, logits, clean_log_probs).view(n_sets, n_pairs).cpu()
    full = pair_metric(data.metric, clean_logits, clean_log_probs)[0].cpu()
    return CircuitMetrics(kind, values[:-1], full, values[-1])


@dataclass(frozen=True)
class FaithfulnessCurve:
    """F at each circuit size (the top `fractions` of edges by |score|), with CPR and CMD.

    `bounds` [size, 2] are 95 % bootstrap intervals over pairs; `pairs` says which pairs
    F was measured on ("held-out" when the task has more than one pair).
    """

    model_name: str
    task_name: str
    method: str
    kind: str
    metric_name: str
    fractions: tuple[float, ...]
    n_edges: tuple[int, ...]
    total_edges: int
    faithfulness: tuple[float, ...]
    bounds: tuple[tuple[float, float], ...]
    full_value: float
    empty_value: float
    cpr: float
    cmd: float
    pairs: str
    normalisation: str = NORMALISATION
    notes: tuple[str, ...] = field(default=())


def log_area(n_edges, values) -> tuple[float, float]:
    """(CPR, CMD): trapezoid areas of F and of |1 - F| over log edge count scaled to [0, 1]."""
    x = [math.log(n) for n in n_edges]
    span = x[-1] - x[0]
    if span <= 0:
        return float(values[-1]), abs(1 - float(values[-1]))
    cpr = cmd = 0.0
    for i in range(1, len(x)):
        width = (x[i] - x[i - 1]) / span
        cpr += width * (values[i] + values[i - 1]) / 2
        cmd += width * (abs(1 - values[i]) + abs(1 - values[i - 1])) / 2
    return cpr, cmd


def faithfulness_curve(model, scores: EdgeScores, data: CircuitData, kind: str = "resample",
                       fractions=CURVE_FRACTIONS, reference_tokens: torch.Tensor | None = None,
                       pairs: str = "held-out", progress: Progress | None = None) -> FaithfulnessCurve:
    """F of the top edges of `scores` at each size in `fractions`, measured on `data`."""
    weights = gpt2_weights(model)
    keeps = top_fraction_keeps(scores, fractions)
    metrics = circuit_metrics(weights, data, keeps, kind, reference_tokens, progress)
    values = metrics.faithfulness().tolist()
    bounds = metrics.bootstrap().tolist() if data.n_pairs > 1 else [[v, v] for v in values]
    n_edges = [int(k.sum()) for k in keeps]
    cpr, cmd = log_area(n_edges, values)
    notes = () if data.n_pairs > 1 else (
        "One prompt pair: F is measured on the pair the scores came from (no held-out pairs), "
        "and no interval can be drawn.",)
    return FaithfulnessCurve(
        model_name=data.model_name, task_name=data.task_name, method=scores.method, kind=kind,
        metric_name=data.metric.name, fractions=tuple(fractions), n_edges=tuple(n_edges),
        total_edges=scores.n_edges, faithfulness=tuple(values),
        bounds=tuple(tuple(b) for b in bounds), full_value=float(metrics.full.mean()),
        empty_value=float(metrics.empty.mean()), cpr=cpr, cmd=cmd, pairs=pairs, notes=notes)


@dataclass(frozen=True)
class CircuitFaithfulness:
    """F of one circuit and of its complement (completeness), with intervals, under `kind`."""

    kind: str
    n_edges: int
    faithfulness: float
    completeness: float
    interval: tuple[float, float]
    circuit_value: float
    full_value: float
    empty_value: float
    n_pairs: int
    normalisation: str = NORMALISATION


def measure_circuit(model, circuit: Circuit, data: CircuitData, kind: str = "resample",
                    reference_tokens: torch.Tensor | None = None,
                    complement: bool = True) -> CircuitFaithfulness:
    """F of `circuit` (and of its complement) on `data`'s pairs, in one batched pass."""
    weights = gpt2_weights(model)
    valid = circuit.graph.valid[:, :, None]
    keeps = [circuit.keep] + ([valid & ~circuit.keep] if complement else [])
    metrics = circuit_metrics(weights, data, torch.stack(keeps), kind, reference_tokens)
    values = metrics.faithfulness().tolist()
    interval = (tuple(metrics.bootstrap()[0].tolist()) if data.n_pairs > 1
                else (values[0], values[0]))
    return CircuitFaithfulness(
        kind=kind, n_edges=circuit.n_edges, faithfulness=values[0],
        completeness=values[1] if complement else float("nan"), interval=interval,
        circuit_value=float(metrics.circuits[0].mean()), full_value=float(metrics.full.mean()),
        empty_value=float(metrics.empty.mean()), n_pairs=data.n_pairs)

