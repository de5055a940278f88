"""Figures for attribution: token strips coloured by score, methods side by side, faithfulness
curves, the rank-correlation matrix, the continuation matrix and the perturbation table.

Scores are drawn on a diverging scale centred on 0 (red raises the target, blue lowers it). In
the side-by-side view each method's row is divided by its own largest |score|, since methods
score in different units (logits, gradient norms, Shapley values); hover shows the raw score.
Every token is escaped with `plot_text` before it reaches Plotly.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.attribution.faithfulness import Faithfulness, RankCorrelations
from interp.attribution.layers import LayerFlowResult
from interp.attribution.perturbation import PerturbationAnalysis
from interp.attribution.results import AttributionResult
from interp.attribution.runs import AttributionRun
from interp.errors import invalid_choice
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.tokens import axis_labels

SCALE = "RdBu"
RUN_VIEWS = ("methods", "faithfulness", "correlations", "perturbation", "sanity", "flow")
MARGINS = dict(l=10, r=10, t=50, b=10)


def token_axis(tokens) -> list[str]:
    """Escaped token labels for a heatmap axis."""
    return [plot_text(label) for label in axis_labels(tokens)]


def normalised_rows(rows: list[list[float]]) -> list[list[float]]:
    """Each row divided by its own largest |value| (a row of zeros stays zeros)."""
    return [[v / (max(abs(x) for x in row) or 1.0) for v in row] for row in rows]


def token_heatmap(rows: list[list[float]], raw: list[list[float]], row_labels: list[str],
                  tokens, title: str, colour_title: str) -> go.Figure:
    """Rows of token scores as a heatmap coloured by `rows`, with `raw` on hover."""
    labels = token_axis(tokens)
    words = [plot_text(token) for token in tokens]
    figure = go.Figure(go.Heatmap(
        z=rows, x=labels, y=row_labels, customdata=raw, text=[words] * len(rows),
        texttemplate="%{text}", colorscale=SCALE, reversescale=True, zmid=0, zmin=-1, zmax=1,
        colorbar=dict(title=colour_title),
        hovertemplate="%{y}<br>token %{x}<br>score = %{customdata:.4g}<extra></extra>"))
    figure.update_layout(title=title, height=120 + 40 * len(rows), margin=MARGINS,
                         xaxis=dict(showticklabels=False), yaxis_autorange="reversed")
    return figure


def target_title(result_or_run) -> str:
    """The attribution target, for a figure title."""
    return f"target {plot_text(result_or_run.target.label)}"


@register_figure(AttributionResult)
def attribution_figure(result: AttributionResult) -> CaptionedFigure:
    """One map: a strip of tokens, or for a continuation a generated-token x input-token matrix."""
    scores = result.scores
    if scores.dim() == 2:
        generated = result.extras.get("generated_tokens") or [
            str(i + 1) for i in range(scores.shape[0])]
        rows = [f"{i + 1}. {plot_text(token)}" for i, token in enumerate(generated)]
        raw = scores.nan_to_num(0.0).tolist()
        figure = token_heatmap(normalised_rows(raw), raw, rows, result.tokens,
                               f"{plot_text(result.method)}: each generated token (row) explained "
                               "by the prompt's tokens", "score / row max")
        caption = ("Rows are the generated tokens in order, columns the prompt's tokens; colour "
                   "is each row's score divided by its largest |score| (red raises that token, "
                   "blue lowers it). Hover for the raw score.")
        return CaptionedFigure(figure, caption, f"attribution_{result.method}_continuation")
    raw = [scores.tolist()]
    figure = token_heatmap(normalised_rows(raw), raw, [plot_text(result.method)], result.tokens,
                           f"{plot_text(result.method)}, {target_title(result)}", "score / max")
    caption = ("Each token coloured by its score divided by the largest |score| (red raises the "
               "target, blue lowers it); hover for the raw score.")
    return CaptionedFigure(figure, caption, f"attribution_{result.method}")


def run_scores(run: AttributionRun) -> list[list[float]]:
    """Each method's per-token scores in a run (summed over the embedding axis where kept)."""
    return [(r.scores.sum(0) if r.scores.dim() == 2 else r.scores).nan_to_num(0.0).tolist()
            for r in run.results]


def methods_figure(run: AttributionRun) -> CaptionedFigure:
    """Every method's scores side by side, each row scaled by its own largest |score|."""
    raw = run_scores(run)
    figure = token_heatmap(normalised_rows(raw), raw, [plot_text(m) for m in run.methods],
                           run.tokens, f"Attribution by method, {target_title(run)}",
                           "score / row max")
    continuation = (" For a continuation, a row is the sum over the generated tokens."
                    if run.target.is_continuation else "")
    caption = ("One row per method, one column per token. Colour is the method's score divided "
               "by its own largest |score| (methods score in different units): red raises the "
               "target, blue lowers it. Hover for the raw score." + continuation)
    return CaptionedFigure(figure, caption, "attribution_methods")


def faithfulness_figure(scores: tuple[Faithfulness, ...]) -> CaptionedFigure:
    """Deletion and insertion curves of each method against random orders."""
    figure = go.Figure()
    for scored in scores:
        steps = list(range(len(scored.deletion)))
        figure.add_trace(go.Scatter(x=steps, y=list(scored.deletion), mode="lines+markers",
                                    name=f"{plot_text(scored.method)} deletion"))
        figure.add_trace(go.Scatter(x=steps, y=list(scored.insertion), mode="lines",
                                    line=dict(dash="dot"),
                                    name=f"{plot_text(scored.method)} insertion"))
    first = scores[0]
    steps = list(range(len(first.deletion)))
    figure.add_trace(go.Scatter(x=steps, y=list(first.random_deletion), mode="lines",
                                line=dict(color="black", width=3), name="random deletion"))
    figure.add_trace(go.Scatter(x=steps, y=list(first.random_insertion), mode="lines",
                                line=dict(color="grey", width=3, dash="dot"),
                                name="random insertion"))
    figure.update_layout(title="Faithfulness<br><sub>the target as tokens are masked (deletion) "
                         "or unmasked (insertion)<br>in each method's order</sub>",
                         xaxis_title="tokens masked / unmasked", yaxis_title="target value",
                         height=460, margin={**MARGINS, "t": 95})
    caption = ("Solid: mask the method's most important tokens first; a faithful map makes the "
               "target fall faster than the thick black random-order line. Dotted: start from "
               "a fully masked prompt and unmask them first; it should rise faster than the "
               f"grey random line. Random lines average {first.n_random} random orders.")
    return CaptionedFigure(figure, caption, "attribution_faithfulness")


def correlation_figure(correlations: RankCorrelations) -> CaptionedFigure:
    """The methods' pairwise Spearman rank correlations."""
    names = [plot_text(m) for m in correlations.methods]
    figure = go.Figure(go.Heatmap(
        z=correlations.matrix.tolist(), x=names, y=names, colorscale=SCALE, reversescale=True,
        zmid=0, zmin=-1, zmax=1, texttemplate="%{z:.2f}", colorbar=dict(title="Spearman"),
        hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(title="Rank agreement between methods", height=160 + 40 * len(names),
                         margin=MARGINS, yaxis_autorange="reversed")
    caption = ("Spearman rank correlation of two methods' token scores (BOS left out): 1 = the "
               "same order, 0 = unrelated, -1 = reversed.")
    return CaptionedFigure(figure, caption, "attribution_correlations")


def sanity_figure(run: AttributionRun) -> CaptionedFigure:
    """Each method's rank correlation with itself on the re-initialised model, flagged ones in red."""
    methods = [plot_text(check.method) for check in run.sanity]
    values = [check.spearman for check in run.sanity]
    colours = ["#d62728" if check.flagged else "#2ca02c" for check in run.sanity]
    figure = go.Figure(go.Bar(x=methods, y=values, marker_color=colours,
                              text=[f"{v:.2f}" for v in values], textposition="outside"))
    threshold = run.sanity[0].threshold
    figure.add_hline(y=threshold, line_dash="dash", annotation_text="flag at or above")
    figure.update_layout(title="Sanity check: rank correlation with the map after randomising "
                         f"the top {run.sanity[0].n_layers_randomised} layers",
                         yaxis=dict(range=[-1, 1.1], title="Spearman"), height=360,
                         margin=MARGINS)
    caption = ("Each method rerun on a private copy of the model whose top layers have random "
               "weights (Adebayo et al. 2018). A map that stays the same (red, at or above the "
               "dashed line) does not depend on what those layers learned: trust it less.")
    return CaptionedFigure(figure, caption, "attribution_sanity")


@register_figure(PerturbationAnalysis)
def perturbation_table(analysis: PerturbationAnalysis) -> CaptionedTable:
    """What the model writes after each token edit, with its caption."""
    table = pd.DataFrame([(row.position, row.token, row.replacement, row.change,
                           row.continuation, "yes" if row.continuation_changed else "")
                          for row in analysis.rows],
                         columns=["position", "token", "edited to", "target change",
                                  "model now writes", "changed"])
    caption = (f"Each row edits one token and re-runs the model: the change in the target and the "
               f"next {analysis.n_new_tokens} greedy tokens. Unedited, the model writes "
               f"{analysis.original_continuation!r}.")
    return CaptionedTable(table, caption, "attribution_perturbation")


@register_figure(LayerFlowResult)
def flow_figure(flow: LayerFlowResult) -> CaptionedFigure:
    """Residual stream, attention output and MLP output relevance: layers (rows) x tokens."""
    panels = (("residual stream entering each block", flow.residual,
               [f"L{i}" if i < flow.n_layers else "out" for i in range(flow.n_layers + 1)]),
              ("attention output", flow.attention, [f"L{i}" for i in range(flow.n_layers)]),
              ("MLP output", flow.mlp, [f"L{i}" for i in range(flow.n_layers)]))
    limit = max(float(values.abs().max()) for _, values, _ in panels) or 1.0
    figure = make_subplots(rows=1, cols=3, subplot_titles=[title for title, _, _ in panels],
                           horizontal_spacing=0.06)
    labels = token_axis(flow.tokens)
    for column, (_, values, rows) in enumerate(panels, start=1):
        figure.add_trace(go.Heatmap(
            z=values.tolist(), x=labels, y=rows, colorscale=SCALE, reversescale=True, zmid=0,
            zmin=-limit, zmax=limit, showscale=column == 3, colorbar=dict(title="relevance"),
            hovertemplate="%{y}, token %{x}<br>relevance = %{z:.4g}<extra></extra>"),
            row=1, col=column)
        figure.update_yaxes(autorange="reversed", row=1, col=column)
    figure.update_layout(title=f"Layer-wise flow ({plot_text(flow.method)}), "
                         f"{target_title(flow)}", height=200 + 28 * (flow.n_layers + 1),
                         margin=MARGINS)
    caption = ("Rows are layers (top: the embeddings), columns tokens; colour is the relevance of "
               "that vector for the target on one scale for all three panels (red raises it). "
               "Read down the residual panel to see relevance move from the tokens that matter "
               "to the last position; the other panels show which layer's attention or MLP "
               "wrote it. " + " ".join(plot_text(note) for note in flow.notes))
    return CaptionedFigure(figure, caption, "attribution_layer_flow")


@register_figure(AttributionRun)
def run_figure(run: AttributionRun, view: str = "methods") -> CaptionedFigure | CaptionedTable:
    """One view of a run: "methods" (side by side), "faithfulness", "correlations", "sanity",
    "perturbation" (those the run computed)."""
    if view == "methods":
        return methods_figure(run)
    if view == "faithfulness" and run.faithfulness:
        return faithfulness_figure(run.faithfulness)
    if view == "correlations" and run.correlations is not None:
        return correlation_figure(run.correlations)
    if view == "sanity" and run.sanity:
        return sanity_figure(run)
    if view == "perturbation" and run.perturbation is not None:
        return perturbation_table(run.perturbation)
    if view == "flow" and run.flow is not None:
        return flow_figure(run.flow)
    computed = ["methods", *(name for name, present in (
        ("faithfulness", run.faithfulness), ("correlations", run.correlations is not None),
        ("perturbation", run.perturbation is not None), ("sanity", run.sanity),
        ("flow", run.flow is not None)) if present)]
    raise invalid_choice("attribution view (of those this run computed)", view, computed)
