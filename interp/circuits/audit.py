"""Estimator audit: for the top edges, EAP, EAP-IG and the exact effect side by side.

EAP linearises around the corrupted run, so an edge whose effect only appears once other
activations move (a saturated softmax, a LayerNorm near its limit) gets a gradient near zero
though patching it changes the metric: such edges are flagged "saturated".
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.circuits.data import CircuitData
from interp.circuits.scores import EdgeScores, edge_scores

# Saturated: |EAP| below this share of |exact| while |exact| is among the audit's large effects.
SATURATED_SHARE = 0.25


@dataclass(frozen=True)
class EstimatorAudit:
    """Rows (edge label, EAP, EAP-IG, exact, saturated) for the top-k edges by |EAP-IG|."""

    model_name: str
    task_name: str
    metric_name: str
    header: tuple[str, ...]
    rows: tuple[tuple, ...]

    @property
    def n_saturated(self) -> int:
        return sum(1 for row in self.rows if row[-1])


def audit_estimators(model, data: CircuitData, eap: EdgeScores, eap_ig: EdgeScores,
                     k: int = 20, progress=None) -> EstimatorAudit:
    """The top-`k` edges of `eap_ig` with their EAP, EAP-IG and exact scores."""
    top = eap_ig.ranked(k)
    edges = [(s, r, p) for s, r, p, _ in top]
    exact = edge_scores(model, data, "exact", edges=edges, progress=progress)
    graph = eap.graph
    largest = max((abs(float(exact.scores[e])) for e in edges), default=0.0)
    rows = []
    for s, r, p in edges:
        exact_value = float(exact.scores[s, r, p])
        eap_value = float(eap.scores[s, r, p])
        saturated = (abs(exact_value) >= 0.2 * largest > 0
                     and abs(eap_value) < SATURATED_SHARE * abs(exact_value))
        rows.append((graph.edge_label(s, r, p), eap_value, float(eap_ig.scores[s, r, p]),
                     exact_value, saturated))
    return EstimatorAudit(data.model_name, data.task_name, data.metric.name,
                          ("edge", "EAP", "EAP-IG", "exact", "saturated"), tuple(rows))
