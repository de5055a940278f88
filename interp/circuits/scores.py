"""Edge scores: how much each sender -> receiver edge carries the task, by three estimators.

EAP (edge attribution patching, Syed et al. 2023) scores an edge by the first-order estimate
(sender's clean output - its corrupted output) . d metric / d receiver's input, the gradient
taken on the corrupted run (TransformerLens 4.3's convention: positive = patching the edge
towards clean raises the metric); all edges from two forward passes and one backward. EAP-IG
(Hanna et al. 2024) averages that gradient over m inputs on the straight line from the corrupted
to the clean embeddings (left Riemann points k/m, so m = 1 is EAP), which repairs edges whose
gradient saturates. Exact scores patch one edge at a time into the corrupted run (the metric
change), the slow reference the estimators are audited against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from interp.circuits.data import CircuitData, check_gradient_metric, pair_metric
from interp.circuits.engine import (
    Gpt2Weights,
    attention_input_gradients,
    forward,
    gpt2_weights,
    gradient_rows_per_chunk,
    rewritten_logits,
    rows_per_chunk,
)
from interp.circuits.graph import EdgeGraph
from interp.circuits.replacements import sender_outputs
from interp.errors import InvalidOptionError, invalid_choice
from interp.tokens import SCREEN_ONLY

METHODS = ("eap", "eap_ig", "exact")
METHOD_LABELS = {"eap": "EAP", "eap_ig": "EAP-IG", "exact": "exact (edge patching)"}
DEFAULT_IG_STEPS = 5
# Exact scores run one patched pass per edge and pair; past this many edges, audit a subset.
MAX_EXACT_EDGES = 20_000

Progress = Callable[[float, str], object]


@dataclass(frozen=True)
class EdgeScores:
    """Every edge's score [sender, receiver, pos] (0 where no edge exists; see `EdgeGraph`).

    `clean_value` and `corrupted_value` are the metric (mean over pairs) on the two runs; a
    score is in the metric's units (its change when the edge is patched from corrupted to clean).
    """

    model_name: str
    task_name: str
    method: str
    metric_name: str
    scores: torch.Tensor
    graph_shape: tuple[int, int, int]
    clean_value: float
    corrupted_value: float
    n_pairs: int
    tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    position_labels: tuple[str, ...] = ()
    ig_steps: int = 1

    @property
    def graph(self) -> EdgeGraph:
        return EdgeGraph(*self.graph_shape)

    @property
    def n_edges(self) -> int:
        return self.graph.n_edges

    def ranked(self, k: int | None = None) -> list[tuple[int, int, int, float]]:
        """Edges by |score|, largest first: (sender, receiver, position, score)."""
        valid = self.graph.valid[:, :, None].expand_as(self.scores)
        flat = torch.where(valid, self.scores.abs(), torch.tensor(-1.0)).flatten()
        n = int(valid.sum()) if k is None else min(k, int(valid.sum()))
        order = torch.argsort(flat, descending=True, stable=True)[:n]
        shape = self.scores.shape
        rows = []
        for index in order.tolist():
            s, rest = divmod(index, shape[1] * shape[2])
            r, p = divmod(rest, shape[2])
            rows.append((s, r, p, float(self.scores[s, r, p])))
        return rows


def scores_result(data: CircuitData, method: str, scores: torch.Tensor, graph: EdgeGraph,
                  clean_value: float, corrupted_value: float, ig_steps: int = 1) -> EdgeScores:
    """Wrap a [sender, receiver, pos] score tensor as `EdgeScores`, zeroing edges the graph does not have."""
    scores = torch.where(graph.valid[:, :, None].to(scores.device), scores, 0.0)
    return EdgeScores(
        model_name=data.model_name, task_name=data.task_name, method=method,
        metric_name=data.metric.name, scores=scores.detach().float().cpu(),
        graph_shape=(graph.n_layers, graph.n_heads, graph.n_pos), clean_value=clean_value,
        corrupted_value=corrupted_value, n_pairs=data.n_pairs, tokens=data.tokens,
        position_labels=tuple(data.position_label(p) for p in range(data.n_pos)),
        ig_steps=ig_steps)


def integrated_scores(weights: Gpt2Weights, data: CircuitData, steps: int,
                      progress: Progress | None = None) -> EdgeScores:
    """EAP-IG with `steps` gradient points (1 = EAP): forward and backward passes over steps x
    pairs rows, in chunks of `gradient_rows_per_chunk` rows (a few pairs with all their steps,
    or one pair's steps in parts; scores are sums over rows, so chunks add up to the one-pass
    result), plus one clean forward for the senders' clean outputs."""
    check_gradient_metric(data.metric)
    if not isinstance(steps, int) or steps < 1:
        raise InvalidOptionError(f"EAP-IG needs a whole number of steps, at least 1; got {steps!r}.")
    device = weights.wte.device
    clean_tokens, corrupted_tokens = data.clean_tokens.to(device), data.corrupted_tokens.to(device)
    clean_outputs, clean_logits = sender_outputs(weights, clean_tokens)
    clean_embeds, corrupted_embeds = weights.wte[clean_tokens], weights.wte[corrupted_tokens]
    graph = weights.graph(data.n_pos)
    label = METHOD_LABELS["eap_ig" if steps > 1 else "eap"]
    per_chunk = gradient_rows_per_chunk(weights, data.n_pos)
    pairs_per_chunk = max(1, per_chunk // steps)
    # One pair's steps in even parts when they do not fit one chunk (5 steps in 4 rows: 3 + 2).
    steps_per_chunk = math.ceil(steps / math.ceil(steps / per_chunk))
    scores = clean_outputs.new_zeros((graph.n_senders, graph.n_receivers, graph.n_pos))
    corrupted_sum, done = 0.0, 0
    for first_pair in range(0, data.n_pairs, pairs_per_chunk):
        pairs = range(first_pair, min(data.n_pairs, first_pair + pairs_per_chunk))
        metric = data.subset(pairs).metric
        deltas = None
        for first_step in range(0, steps, steps_per_chunk):
            alphas = torch.arange(first_step, min(steps, first_step + steps_per_chunk),
                                  device=device, dtype=clean_embeds.dtype) / steps
            chosen = slice(pairs.start, pairs.stop)
            # Row k * len(pairs) + j: step k of pair j, so the first len(pairs) rows of the
            # first chunk are alpha = 0, the corrupted run itself.
            embeds = (corrupted_embeds[None, chosen] + alphas[:, None, None, None]
                      * (clean_embeds - corrupted_embeds)[None, chosen]
                      ).reshape(-1, *clean_embeds.shape[1:])
            if progress is not None:
                progress(0.3 + 0.3 * done / (steps * data.n_pairs),
                         f"{label}: gradients, {done} of {steps * data.n_pairs} passes")
            with torch.enable_grad():
                embeds = embeds.detach().requires_grad_(True)
                out = forward(weights, embeds, track_inputs=True,
                              kept_senders=len(pairs) if deltas is None else 0)
                values = pair_metric(metric, out.last_logits, None)
                inputs = [*(p for qkv in out.projections for p in qkv), *out.mlp_inputs,
                          out.final_input]
                # The gradient of the mean over every row of every chunk.
                grads = torch.autograd.grad(values.sum() / (steps * data.n_pairs), inputs)
            if deltas is None:
                corrupted_sum += float(values[0].sum().detach())
                assert out.sender_outputs is not None  # a plain pass keeps them
                # clean - corrupted, written over the corrupted outputs (no third copy)
                deltas = torch.sub(clean_outputs[chosen], out.sender_outputs,
                                   out=out.sender_outputs)
            scores += chunk_scores(weights, graph, deltas, out, grads, len(alphas))
            done += len(alphas) * len(pairs)
            del out, grads, inputs, values
    clean_value = float(pair_metric(data.metric, clean_logits, None).mean())
    return scores_result(data, "eap_ig" if steps > 1 else "eap", scores, graph, clean_value,
                         corrupted_sum / data.n_pairs, ig_steps=steps)


def chunk_scores(weights: Gpt2Weights, graph: EdgeGraph, deltas: torch.Tensor, out,
                 grads, n_steps: int) -> torch.Tensor:
    """One chunk's scores [sender, receiver, pos]: the sum over its rows (step k of pair j at
    row k * pairs + j) of sender delta . receiver gradient. Each receiver's gradient is summed
    over the steps first (the pair's delta is the same at every step), and layer by layer, so
    one layer's receiver gradients are held at a time."""
    n_layers, n_pairs = graph.n_layers, deltas.shape[0]

    def per_pair(grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(n_steps, n_pairs, *grad.shape[1:]).sum(0)

    scores = deltas.new_zeros((graph.n_senders, graph.n_receivers, graph.n_pos))
    for layer in range(n_layers):
        n_before = graph.senders_before(layer)
        attention = per_pair(attention_input_gradients(
            weights, layer, out.attention_inputs[layer], grads[3 * layer:3 * layer + 3]))
        scores[:n_before, graph.attention_receivers(layer)] = torch.einsum(
            "bpsd,bprd->srp", deltas[:, :, :n_before], attention)
        del attention
        n_mlp = n_before + graph.n_heads
        scores[:n_mlp, graph.mlp_receiver(layer)] = torch.einsum(
            "bpsd,bpd->sp", deltas[:, :, :n_mlp], per_pair(grads[3 * n_layers + layer]))
    scores[:, graph.logits_receiver] = torch.einsum("bpsd,bpd->sp", deltas, per_pair(grads[-1]))
    return scores


def single_edge_masks(graph: EdgeGraph, edges: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """One boolean mask [sender, receiver, pos] per edge, with only that edge set."""
    masks = torch.zeros((len(edges), graph.n_senders, graph.n_receivers, graph.n_pos),
                        dtype=torch.bool)
    for row, (s, r, p) in enumerate(edges):
        masks[row, s, r, p] = True
    return masks


@torch.no_grad()
def patched_edge_metrics(weights: Gpt2Weights, data: CircuitData,
                         edge_sets: Sequence[torch.Tensor] | torch.Tensor,
                         progress: Progress | None = None) -> torch.Tensor:
    """The metric [set, pair] on the corrupted run with each set of edges ([set, sender,
    receiver, pos] bool) patched to carry the clean senders' outputs."""
    device = weights.wte.device
    clean_outputs, clean_logits = sender_outputs(weights, data.clean_tokens.to(device))
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    corrupted_embeds = weights.wte[data.corrupted_tokens.to(device)]
    n_sets, n_pairs = len(edge_sets), data.n_pairs
    step = max(1, rows_per_chunk(data.n_pos, clean_outputs.shape[2], clean_outputs.shape[3],
                                 weights.graph_shape[1]) // n_pairs)
    values = []
    for start in range(0, n_sets, step):
        masks = torch.as_tensor(edge_sets[start:start + step]).to(device)
        copies = masks.shape[0]
        # Row r is set r // n_pairs on pair r % n_pairs: the pairs' tensors cycle, not copied.
        logits = rewritten_logits(weights, corrupted_embeds, masks, clean_outputs,
                                  mask_repeats=n_pairs)
        metric = pair_metric(data.metric, logits, clean_log_probs)
        values.append(metric.view(copies, n_pairs))
        if progress is not None:
            done = min(n_sets, start + step)
            progress(done / n_sets, f"Exact scores: {done} of {n_sets} edges patched")
    return torch.cat(values).cpu()


def exact_scores(weights: Gpt2Weights, data: CircuitData,
                 edges: Sequence[tuple[int, int, int]] | None = None,
                 progress: Progress | None = None) -> EdgeScores:
    """Each edge's exact effect: metric with that edge alone patched clean into the corrupted
    run, minus the corrupted run's (mean over pairs); `edges` (sender, receiver, pos) limits the
    work to an audit's edges (the others score 0)."""
    graph = weights.graph(data.n_pos)
    if edges is None:
        senders, receivers = torch.nonzero(graph.valid, as_tuple=True)
        edges = [(int(s), int(r), p) for s, r in zip(senders, receivers, strict=True)
                 for p in range(graph.n_pos)]
    if len(edges) > MAX_EXACT_EDGES:
        raise InvalidOptionError(
            f"Exact scores patch every edge one at a time; this graph has {len(edges)} edges "
            f"(at most {MAX_EXACT_EDGES}). Score a subset (edges=...), e.g. an audit's top edges, "
            "or use EAP / EAP-IG.")
    for s, r, p in edges:
        if not (0 <= p < graph.n_pos and bool(graph.valid[s, r])):
            raise InvalidOptionError(f"({s}, {r}, {p}) is not an edge of this graph.")
    chunk = 256
    patched = []
    baseline = patched_edge_metrics(weights, data, torch.zeros(
        (1, graph.n_senders, graph.n_receivers, graph.n_pos), dtype=torch.bool))[0]
    for start in range(0, len(edges), chunk):
        part = edges[start:start + chunk]
        patched.append(patched_edge_metrics(weights, data, single_edge_masks(graph, part)))
        if progress is not None:
            done = start + len(part)
            progress(done / len(edges), f"Exact scores: {done} of {len(edges)} edges patched")
    effects = (torch.cat(patched) - baseline).mean(1) if patched else torch.zeros(0)
    scores = torch.zeros((graph.n_senders, graph.n_receivers, graph.n_pos))
    for (s, r, p), value in zip(edges, effects.tolist(), strict=True):
        scores[s, r, p] = value
    device = weights.wte.device
    clean_logits = sender_outputs(weights, data.clean_tokens.to(device))[1]
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    clean_value = float(pair_metric(data.metric, clean_logits, clean_log_probs).mean())
    return scores_result(data, "exact", scores, graph, clean_value, float(baseline.mean()))


def edge_scores(model, data: CircuitData, method: str = "eap", ig_steps: int = DEFAULT_IG_STEPS,
                edges: Sequence[tuple[int, int, int]] | None = None,
                progress: Progress | None = None) -> EdgeScores:
    """Every edge's score on `data` by `method`: "eap", "eap_ig" (`ig_steps` points) or
    "exact" (optionally only `edges`). Runs on the model's weights without hooks."""
    if method not in METHODS:
        raise invalid_choice("edge-score method", method, METHODS)
    weights = gpt2_weights(model)
    if method == "exact":
        return exact_scores(weights, data, edges, progress)
    return integrated_scores(weights, data, 1 if method == "eap" else ig_steps, progress)
