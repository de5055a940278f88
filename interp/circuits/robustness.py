"""Robustness: the same circuit's F under zero, mean and resample ablation and on held-out
pairs, with bootstrap intervals, and the Jaccard overlap of circuits found on two prompt splits.
A circuit that only holds under one ablation, or that changes with the prompts, says more about
the measurement than about the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.circuits.data import CircuitData, split_pairs
from interp.circuits.faithfulness import measure_circuit
from interp.circuits.scores import edge_scores
from interp.circuits.selection import Circuit, jaccard, select_circuit
from interp.patching.ablation import ABLATION_KINDS


@dataclass(frozen=True)
class Robustness:
    """Rows (ablation, pairs, F, low, high) and the Jaccard overlap of the two splits' circuits."""

    model_name: str
    task_name: str
    n_edges: int
    header: tuple[str, ...]
    rows: tuple[tuple, ...]
    split_jaccard: float
    split_sizes: tuple[int, int]


def robustness(model, circuit: Circuit, discovery: CircuitData, held_out: CircuitData,
               method: str = "eap", ig_steps: int = 5) -> Robustness:
    """F of `circuit` under every ablation on the discovery and held-out pairs, and the overlap
    of the circuits (as many edges) that `method` finds on the two halves of the pairs."""
    rows = []
    for kind in ABLATION_KINDS:
        for label, data in (("discovery", discovery), ("held-out", held_out)):
            measured = measure_circuit(model, circuit, data, kind, complement=False)
            rows.append((kind, label, measured.faithfulness, *measured.interval))
    first, second = split_pairs(discovery.n_pairs)
    circuits = []
    for half in (first, second):
        scores = edge_scores(model, discovery.subset(half), method, ig_steps=ig_steps)
        circuits.append(select_circuit(scores, "top_n", max(1, circuit.n_edges)))
    return Robustness(discovery.model_name, discovery.task_name, circuit.n_edges,
                      ("ablation", "pairs", "F", "low (95%)", "high (95%)"), tuple(rows),
                      jaccard(*circuits), (len(first), len(second)))
