"""One circuits analysis as the page runs it: scores on the discovery pairs, the faithfulness
curve on held-out pairs, the estimator audit, and the circuit shown at a chosen size."""

from __future__ import annotations

from dataclasses import dataclass

from interp.circuits.audit import EstimatorAudit, audit_estimators
from interp.circuits.data import CircuitData, circuit_data, split_pairs
from interp.circuits.faithfulness import (
    CircuitFaithfulness,
    FaithfulnessCurve,
    faithfulness_curve,
    measure_circuit,
)
from interp.circuits.scores import DEFAULT_IG_STEPS, EdgeScores, edge_scores
from interp.circuits.selection import Circuit, select_circuit


@dataclass(frozen=True)
class CircuitRun:
    """Everything the page shows for one task, model, estimator and ablation."""

    model_name: str
    task_name: str
    method: str
    kind: str
    discovery: CircuitData
    held_out: CircuitData
    scores: EdgeScores
    eap: EdgeScores
    curve: FaithfulnessCurve
    audit: EstimatorAudit


@dataclass(frozen=True)
class CircuitView:
    """A circuit chosen from a run's scores, with its faithfulness (F, completeness)."""

    model_name: str
    task_name: str
    scores: EdgeScores
    circuit: Circuit
    measured: CircuitFaithfulness


def run_circuits(model, task, method: str = "eap_ig", kind: str = "resample",
                 ig_steps: int = DEFAULT_IG_STEPS, audit_k: int = 15, progress=None) -> CircuitRun:
    """Scores by `method` on the discovery pairs, the F curve under `kind` on held-out pairs,
    and EAP / EAP-IG / exact for the top `audit_k` edges."""
    data = circuit_data(model, task)
    first, second = split_pairs(data.n_pairs)
    discovery, held_out = data.subset(first), data.subset(second)

    def stage(start: float, width: float):
        if progress is None:
            return None
        return lambda fraction, text: progress(start + width * fraction, text)

    eap = edge_scores(model, discovery, "eap")
    eap_ig = edge_scores(model, discovery, "eap_ig", ig_steps=ig_steps, progress=stage(0.1, 0.2))
    scores = {"eap": eap, "eap_ig": eap_ig}.get(method) or edge_scores(
        model, discovery, "exact", progress=stage(0.1, 0.3))
    curve = faithfulness_curve(model, scores, held_out, kind,
                               pairs="held-out" if data.n_pairs > 1 else "the same pair",
                               progress=stage(0.4, 0.3))
    audit = audit_estimators(model, discovery, eap, eap_ig, audit_k, progress=stage(0.7, 0.3))
    return CircuitRun(data.model_name, data.task_name, method, kind, discovery, held_out,
                      scores, eap, curve, audit)


def view_circuit(model, run: CircuitRun, value: float, selection: str = "top_n") -> CircuitView:
    """The circuit chosen from the run's scores by `selection` ("top_n": `value` edges;
    "threshold": edges with |score| >= `value`), measured on held-out pairs by an exact
    ablate-outside pass (what the page's slider and threshold re-measure)."""
    circuit = select_circuit(run.scores, selection, value)
    measured = measure_circuit(model, circuit, run.held_out, run.kind)
    return CircuitView(run.model_name, run.task_name, run.scores, circuit, measured)
