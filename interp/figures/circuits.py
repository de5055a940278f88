"""Figures for circuits: the circuit graph (layers as columns, positions as rows, the logits as
the sink; edges coloured and weighted by signed score) and the faithfulness curve."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from interp.circuits.audit import EstimatorAudit
from interp.circuits.direct_effects import ComponentEffects
from interp.circuits.faithfulness import FaithfulnessCurve
from interp.circuits.report import circuit_edges, node_effects
from interp.circuits.robustness import Robustness
from interp.circuits.runs import CircuitView
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure


def node_place(name: str, n_layers: int, n_heads: int) -> float:
    """x of a component: embeddings at 0, layer l's heads then MLP in column l + 1, logits last."""
    if name == "embed":
        return 0.0
    if name == "logits":
        return n_layers + 1.0
    if name.startswith("MLP"):
        return int(name[3:]) + 1 + 0.8
    layer, head = name[1:].split("H")
    return int(layer) + 1 + 0.6 * int(head) / max(1, n_heads)


@register_figure(CircuitView)
def circuit_graph(view: CircuitView) -> CaptionedFigure:
    """The kept edges as a graph by layer, width by |score|, with the circuit's F in the caption."""
    graph = view.circuit.graph
    labels = view.scores.position_labels or tuple(str(p) for p in range(graph.n_pos))
    edges = circuit_edges(view)
    largest = max((abs(w) for *_, w in edges), default=1.0) or 1.0
    figure = go.Figure()
    for sender, receiver, position, weight in edges:
        target = receiver.split(".")[0]
        x0, x1 = (node_place(n, graph.n_layers, graph.n_heads) for n in (sender, target))
        figure.add_trace(go.Scatter(
            x=[x0, x1], y=[position, position], mode="lines", hoverinfo="text",
            text=plot_text(f"{sender} -> {receiver} @ {labels[position]}: {weight:.4g}"),
            line=dict(width=1 + 5 * abs(weight) / largest,
                      color="#b2182b" if weight > 0 else "#2166ac"), showlegend=False))
    effects = node_effects(view)
    points = {}
    for sender, receiver, position, _ in edges:
        for name in (sender, receiver.split(".")[0]):
            points[(name, position)] = effects.get(name, 0.0)
    top = max(points.values(), default=1.0) or 1.0
    figure.add_trace(go.Scatter(
        x=[node_place(n, graph.n_layers, graph.n_heads) for n, _ in points],
        y=[p for _, p in points], mode="markers+text",
        text=[plot_text(n) for n, _ in points], textposition="top center",
        marker=dict(size=[8 + 18 * v / top for v in points.values()], color="#444"),
        hovertext=[plot_text(f"{n} @ {labels[p]}: effect {v:.4g}") for (n, p), v in points.items()],
        hoverinfo="text", showlegend=False))
    figure.update_layout(
        title=dict(text=f"Circuit of {view.circuit.n_edges} edges<br><sub>F = "
                        f"{view.measured.faithfulness:.3f} under {view.measured.kind} ablation"
                        "</sub>", font=dict(size=15)),
        xaxis=dict(tickvals=list(range(graph.n_layers + 2)),
                   ticktext=["embed", *[f"L{i}" for i in range(graph.n_layers)], "logits"]),
        yaxis=dict(tickvals=list(range(graph.n_pos)), ticktext=[plot_text(t) for t in labels],
                   autorange="reversed"), margin=dict(l=10, r=10, t=70, b=10), height=520)
    caption = ("Columns are layers (heads, then the MLP), rows are token positions; each line is "
               "a kept edge, red when patching it towards the clean run raises the metric, blue "
               "when it lowers it, thicker for larger |score|. Dots are sized by the component's "
               "summed |score|. Hover for values.")
    return CaptionedFigure(figure, caption, "circuit_graph")


@register_figure(FaithfulnessCurve)
def curve_figure(curve: FaithfulnessCurve) -> CaptionedFigure:
    """Faithfulness against circuit size with its bootstrap band, CPR and CMD."""
    lows = [b[0] for b in curve.bounds]
    highs = [b[1] for b in curve.bounds]
    figure = go.Figure([
        go.Scatter(x=list(curve.n_edges), y=highs, mode="lines", line=dict(width=0),
                   showlegend=False, hoverinfo="skip"),
        go.Scatter(x=list(curve.n_edges), y=lows, mode="lines", fill="tonexty", line=dict(width=0),
                   fillcolor="rgba(33,102,172,0.2)", name="95 % interval", hoverinfo="skip"),
        go.Scatter(x=list(curve.n_edges), y=list(curve.faithfulness), mode="lines+markers",
                   name="F", customdata=list(curve.fractions),
                   hovertemplate="%{x} edges (%{customdata:.1%})<br>F = %{y:.3f}<extra></extra>")])
    figure.add_hline(y=1.0, line_dash="dot")
    figure.update_layout(
        title=dict(text=f"Faithfulness by circuit size ({curve.method}, {curve.kind})<br><sub>"
                        f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}, on {curve.pairs} pairs</sub>",
                   font=dict(size=15)),
        xaxis=dict(type="log", title="edges kept"), yaxis_title="F",
        margin=dict(l=10, r=10, t=70, b=10))
    caption = (f"F of the top edges at each size, edges outside ablated ({curve.kind}). "
               f"{curve.normalisation}. CPR is the area under the curve and CMD the area between "
               "it and 1, over log edge count scaled to [0, 1].")
    return CaptionedFigure(figure, caption, "faithfulness_curve")


@register_figure(EstimatorAudit)
def audit_table(audit: EstimatorAudit) -> CaptionedTable:
    """EAP and EAP-IG against exact edge effects for the top edges, with its caption."""
    table = pd.DataFrame(list(audit.rows), columns=list(audit.header))
    caption = (f"The top edges by |EAP-IG| with EAP and the exact effect (that edge alone "
               f"patched clean into the corrupted run), in {audit.metric_name} units; "
               f"{audit.n_saturated} flagged saturated (EAP near 0 while the exact effect is large).")
    return CaptionedTable(table, caption, "estimator_audit")


@register_figure(ComponentEffects)
def component_effects_table(result: ComponentEffects) -> CaptionedTable:
    """The circuit's components with their direct effects, with its caption."""
    table = pd.DataFrame(list(result.rows), columns=list(result.header))
    caption = (f"Each component's direct effect on {result.metric_label} at the answer position "
               f"(direct logit attribution, mean over {result.n_pairs} pairs): what it writes "
               "straight into the answer direction, not what removing it changes.")
    return CaptionedTable(table, caption, "component_effects")


@register_figure(Robustness)
def robustness_table(result: Robustness) -> CaptionedTable:
    """One circuit's F under each ablation, on discovery and held-out pairs, with its caption."""
    table = pd.DataFrame(list(result.rows), columns=list(result.header))
    caption = (f"The same {result.n_edges}-edge circuit under each ablation, on the discovery and "
               f"held-out pairs, with 95 % bootstrap intervals. Circuits found on two halves of "
               f"the pairs ({result.split_sizes[0]} and {result.split_sizes[1]}) overlap with "
               f"Jaccard {result.split_jaccard:.2f}.")
    return CaptionedTable(table, caption, "robustness")
