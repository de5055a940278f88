"""Circuits: the smallest part of the model that does a task, how faithful it is, how robust.

Given clean/corrupted prompt pairs of a patching task, every edge of GPT-2's residual graph
(embeddings, heads and MLPs sending; heads' q/k/v inputs, MLPs and the logits receiving) is
scored by EAP, EAP-IG or exact edge patching; a circuit is chosen from the scores and run with
every edge outside it ablated (resample, mean or zero) to measure its faithfulness F, as the
MIB benchmark defines it. Node-level circuits come from iterative pruning of heads and MLPs.

    data = circuit_data(model, task)                  # a patching task's pairs and metric
    scores = edge_scores(model, data, "eap_ig")       # EdgeScores [sender, receiver, pos]
    circuit = select_circuit(scores, "top_n", 100)    # Circuit (dead edges pruned)
    measure_circuit(model, circuit, data, "resample") # F, completeness, bootstrap interval
    faithfulness_curve(model, scores, data)           # F at 10 sizes, CPR, CMD
    find_circuit(model, data, threshold=0.8)          # node-level iterative pruning
    ablate(model, data, ["L0H3", "MLP0"], "mean")     # the metric with components ablated

One idea per module: `graph` (nodes and edges), `engine` (the rewritten forward pass),
`data`, `replacements` (what ablated edges carry), `scores`, `selection`, `faithfulness`,
`ablation` (nodes), `robustness`.
"""

from interp.circuits.ablation import NodeCircuit, ablate, find_circuit
from interp.circuits.data import CircuitData, circuit_data, split_pairs
from interp.circuits.faithfulness import (
    CURVE_FRACTIONS,
    CircuitFaithfulness,
    FaithfulnessCurve,
    faithfulness_curve,
    measure_circuit,
)
from interp.circuits.graph import EdgeGraph
from interp.circuits.scores import METHODS, EdgeScores, edge_scores
from interp.circuits.selection import SELECTIONS, Circuit, jaccard, prune_dead, select_circuit

__all__ = [
    "CURVE_FRACTIONS", "METHODS", "SELECTIONS", "Circuit", "CircuitData", "CircuitFaithfulness",
    "EdgeGraph", "EdgeScores", "FaithfulnessCurve", "NodeCircuit", "ablate", "circuit_data",
    "edge_scores", "faithfulness_curve", "find_circuit", "jaccard", "measure_circuit",
    "prune_dead", "select_circuit", "split_pairs",
]
