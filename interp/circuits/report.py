"""Exports and explanations of circuit results: CSV of nodes and edges, graph JSON, the offline
explanation of what the circuit is, how faithful and how robust."""

from __future__ import annotations

import json

import torch

from interp.circuits.audit import EstimatorAudit
from interp.circuits.faithfulness import FaithfulnessCurve
from interp.circuits.robustness import Robustness
from interp.circuits.runs import CircuitView
from interp.explain import Explanation, md_escape, register_explainer
from interp.export import register_csv, table_to_csv


def circuit_edges(view: CircuitView) -> list[tuple[str, str, int, float]]:
    """The kept edges: (sender, receiver, position, score)."""
    graph = view.circuit.graph
    senders, receivers, positions = torch.nonzero(view.circuit.keep, as_tuple=True)
    return [(graph.sender_names[s], graph.receiver_names[r], p,
             float(view.scores.scores[s, r, p]))
            for s, r, p in zip(senders.tolist(), receivers.tolist(), positions.tolist(), strict=True)]


def node_effects(view: CircuitView) -> dict[str, float]:
    """Each component's summed |score| over the circuit's edges it sends or receives."""
    effects: dict[str, float] = {}
    for sender, receiver, _, score in circuit_edges(view):
        for name in (sender, receiver.split(".")[0]):
            effects[name] = effects.get(name, 0.0) + abs(score)
    return effects


def graph_json(view: CircuitView) -> bytes:
    """The circuit as nodes and weighted links (sender -> receiver component, per position)."""
    nodes = [{"id": name, "effect": value} for name, value in node_effects(view).items()]
    links = [{"source": s, "target": r.split(".")[0], "input": r, "position": p, "weight": w}
             for s, r, p, w in circuit_edges(view)]
    return json.dumps({"nodes": nodes, "links": links, "faithfulness": view.measured.faithfulness,
                       "ablation": view.measured.kind}, indent=2).encode("utf-8")


@register_csv(CircuitView)
def circuit_csv(view: CircuitView) -> bytes:
    """A circuit as CSV bytes: its edges with scores, then its nodes with effects."""
    rows: list[tuple] = [("edge", s, r, p, w) for s, r, p, w in circuit_edges(view)]
    rows += [("node", name, "", "", value) for name, value in node_effects(view).items()]
    return table_to_csv(("kind", "sender / node", "receiver", "position", "score / effect"), rows)


@register_csv(FaithfulnessCurve)
def curve_csv(curve: FaithfulnessCurve) -> bytes:
    """A faithfulness curve as CSV bytes, one row per circuit size."""
    rows = [(f, n, v, lo, hi) for f, n, v, (lo, hi) in zip(
        curve.fractions, curve.n_edges, curve.faithfulness, curve.bounds, strict=True)]
    return table_to_csv(("fraction", "edges", "F", "low", "high"), rows)


@register_csv(EstimatorAudit)
def audit_csv(audit: EstimatorAudit) -> bytes:
    """The estimator audit as CSV bytes."""
    return table_to_csv(audit.header, audit.rows)


@register_csv(Robustness)
def robustness_csv(result: Robustness) -> bytes:
    """The robustness table as CSV bytes."""
    return table_to_csv(result.header, result.rows)


@register_explainer(CircuitView)
def explain_circuit(view: CircuitView, curve: FaithfulnessCurve | None = None,
                    robust: Robustness | None = None) -> Explanation:
    """What the circuit is, how faithful, how robust."""
    measured = view.measured
    effects = sorted(node_effects(view).items(), key=lambda item: -item[1])
    components = [name for name, _ in effects if name not in ("embed", "logits")]
    lines = [f"The circuit keeps **{measured.n_edges}** of {view.scores.n_edges} edges, chosen "
             f"by {md_escape(view.scores.method)} scores; it involves "
             + (", ".join(md_escape(c) for c in components[:8]) or "no component") + ".",
             "",
             f"**Faithfulness** F = {measured.faithfulness:.3f} (95 % interval "
             f"{measured.interval[0]:.3f} to {measured.interval[1]:.3f}) under "
             f"{md_escape(measured.kind)} ablation of every other edge, on {measured.n_pairs} "
             f"pair(s): {md_escape(measured.normalisation)}. Completeness (the complement alone) "
             f"is {measured.completeness:.3f}."]
    if curve is not None:
        lines += ["", f"Over circuit sizes, CPR = {curve.cpr:.3f} and CMD = {curve.cmd:.3f} "
                      "(1 and 0 are best)."]
    if robust is not None:
        spread = [row[2] for row in robust.rows]
        lines += ["", f"**Robustness**: F ranges from {min(spread):.3f} to {max(spread):.3f} "
                      "across ablations and prompt sets; circuits found on two halves of the "
                      f"pairs overlap with Jaccard {robust.split_jaccard:.2f}."]
    facts = {"n_edges": measured.n_edges, "faithfulness": measured.faithfulness,
             "completeness": measured.completeness, "components": components,
             "ablation": measured.kind}
    return Explanation(title="Circuit", markdown="\n".join(lines), facts=facts)
