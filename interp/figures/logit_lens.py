"""Figures for the logit lens and direct logit attribution.

The lens heatmap has a row per layer boundary and a column per position: colour is the
probability (read through the final LayerNorm and unembedding) of the token the model finally
predicts there, or of one chosen token, and each cell is labelled with that row's own top-1
token; hover lists the row's top-k. The table view lists the top-k per layer at one position; the
evolution view follows the final top-k candidates' probability and rank up the layers. DLA is
drawn as bars of the largest components and a layer x head heatmap (diverging around 0).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from interp.errors import InvalidOptionError, invalid_choice
from interp.explain import md_escape
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.figures.prediction import probability_label
from interp.logit_lens import DLAResult, LensResult
from interp.models import display_name
from interp.tokens import axis_labels

LENS_VIEWS = ("heatmap", "table", "evolution")
DLA_VIEWS = ("bars", "heads")
LINE_COLOURS = qualitative.Plotly
CELL_CHARACTERS = 7  # a cell shows this much of its token; hover has it whole


def short(text: str, limit: int = CELL_CHARACTERS) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def position_of(result, position: int | None) -> int:
    """A valid position of `result`: `position` (negative counts from the end), else the last."""
    count = len(result.token_ids)
    position = count - 1 if position is None else int(position)
    return position % count if -count <= position < count else count - 1


def top_list(result: LensResult, row: int, position: int) -> list[tuple[str, float]]:
    """The top-k (token, probability) of one lens row at one position."""
    ids = result.top_ids[row, position].tolist()
    probs = result.top_log_probs[row, position].exp().tolist()
    return [(result.text_of(t), p) for t, p in zip(ids, probs, strict=True)]


def lens_heatmap(result: LensResult, token_id: int | None = None) -> go.Figure:
    """Layers x positions coloured by the final prediction's (or `token_id`'s) probability, labelled by each row's top-1."""
    z = (result.candidate_log_probs[..., 0].exp() if token_id is None
         else result.probs_of(token_id))
    rows, positions = z.shape
    text = [[plot_text(short(result.text_of(int(result.top_ids[r, p, 0]))))
             for p in range(positions)] for r in range(rows)]
    hover = [["<br>".join(f"{plot_text(tok)}: {probability_label(prob)}"
                          for tok, prob in top_list(result, r, p))
              for p in range(positions)] for r in range(rows)]
    columns = [plot_text(label) for label in axis_labels(result.tokens)]
    figure = go.Figure(go.Heatmap(
        z=z.tolist(), x=columns, y=list(result.layers), text=text, texttemplate="%{text}",
        textfont=dict(size=10), customdata=hover, colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title="p"),
        hovertemplate=("%{y}, position %{x}<br>colour p = %{z:.3f}<br><b>top tokens</b><br>"
                       "%{customdata}<extra></extra>")))
    figure.update_layout(
        title=f"Logit lens<br><sub>{plot_text(display_name(result.model_name))}</sub>", xaxis_title="position: token",
        yaxis_title="residual stream", yaxis_autorange="reversed", height=120 + 34 * rows,
        margin=dict(l=10, r=10, t=50, b=10))
    return figure


def lens_table(result: LensResult, position: int) -> pd.DataFrame:
    """The top-k of every row at `position` as a table."""
    records = []
    for row, layer in enumerate(result.layers):
        record: dict[str, object] = {"layer": layer}
        for rank, (tok, prob) in enumerate(top_list(result, row, position), start=1):
            record[f"top {rank}"] = f"{tok} ({probability_label(prob)})"
        record["entropy (nats)"] = round(float(result.entropy[row, position]), 4)
        record["KL to final (nats)"] = round(float(result.kl_to_final[row, position]), 4)
        records.append(record)
    return pd.DataFrame(records)


def lens_evolution(result: LensResult, position: int, token_id: int | None) -> go.Figure:
    """The probability and rank of the candidates (or `token_id`) at `position`, row by row."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=("probability", "rank (0 = top)"))
    layers = list(result.layers)
    if result.candidate_ranks is None:
        raise InvalidOptionError("The evolution view needs ranks; run the lens with ranks=True.")
    lines = [(f"{rank + 1}. {result.text_of(int(t))}",
              result.candidate_log_probs[:, position, rank].exp().tolist(),
              result.candidate_ranks[:, position, rank].tolist())
             for rank, t in enumerate(result.candidate_ids[position].tolist())]
    if token_id is not None and int(token_id) not in result.candidate_ids[position].tolist():
        lines.append((f"chosen: {result.text_of(token_id)}",
                      result.probs_of(token_id)[:, position].tolist(),
                      result.ranks_of(token_id)[:, position].tolist()))
    for index, (name, probs, ranks) in enumerate(lines):
        label = plot_text(name)
        line = dict(color=LINE_COLOURS[index % len(LINE_COLOURS)])  # one colour in both panels
        figure.add_trace(go.Scatter(x=layers, y=probs, name=label, mode="lines+markers",
                                    legendgroup=label, customdata=ranks, line=line,
                                    hovertemplate="%{x}: p = %{y:.4f}, rank %{customdata}"
                                                  "<extra>" + label + "</extra>"), row=1, col=1)
        figure.add_trace(go.Scatter(x=layers, y=[r + 1 for r in ranks], name=label,
                                    mode="lines+markers", legendgroup=label, showlegend=False,
                                    customdata=ranks, line=line,
                                    hovertemplate="%{x}: rank %{customdata}<extra>" + label
                                                  + "</extra>"), row=2, col=1)
    figure.update_yaxes(range=[0, 1], row=1, col=1)
    figure.update_yaxes(type="log", autorange="reversed", title_text="rank + 1", row=2, col=1)
    token = plot_text(result.tokens[position])
    figure.update_layout(title=f"Layer by layer<br><sub>after position {position} ({token})</sub>",
                         height=540,
                         margin=dict(l=10, r=10, t=90, b=10))
    return figure


@register_figure(LensResult)
def lens_figure(result: LensResult, view: str = "heatmap", position: int | None = None,
                token_id: int | None = None) -> CaptionedFigure | CaptionedTable:
    """`view`: "heatmap" (coloured by `token_id` when given, a tracked token), "table" or
    "evolution" at `position` (default: the last)."""
    if view not in LENS_VIEWS:
        raise invalid_choice("lens view", view, LENS_VIEWS)
    position = position_of(result, position)
    if view == "heatmap":
        coloured = ("the probability of the token the model finally predicts at that position"
                    if token_id is None else
                    f"the probability of {md_escape(result.text_of(token_id))}")
        return CaptionedFigure(lens_heatmap(result, token_id), (
            f"Each row reads the residual stream through the final LayerNorm and unembedding, "
            f"as if the model stopped there; the last row is the model's own output. Colour is "
            f"{coloured}; each cell is labelled with that row's own top-1 token. Hover for the "
            f"top {result.k}. Position p predicts the token at p + 1."), "logit_lens")
    token = md_escape(result.tokens[position])
    if view == "table":
        return CaptionedTable(lens_table(result, position), (
            f"Top {result.k} next tokens after position {position} ({token}) at each layer "
            "boundary, with probabilities; entropy and KL divergence to the final distribution "
            "in nats (0 = the model's own output)."), "logit_lens_table")
    return CaptionedFigure(lens_evolution(result, position, token_id), (
        f"The model's final top {result.k} candidates after position {position} ({token}), "
        "followed up the layers: their probability (top) and rank (bottom, log scale, 1 = the "
        "row's top token) when the residual stream is read at each layer boundary."),
        "logit_lens_evolution")


def dla_bars(result: DLAResult, position: int, top: int) -> go.Figure:
    """The `top` components by |direct contribution| at `position`, as bars."""
    ranked = result.ranked(position, top)[::-1]  # Plotly draws the first bar at the bottom
    values = [value for _, value in ranked]
    figure = go.Figure(go.Bar(
        x=values, y=[plot_text(label) for label, _ in ranked], orientation="h",
        marker_color=["#2166ac" if v >= 0 else "#b2182b" for v in values],
        text=[f"{v:+.3f}" for v in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:+.4f}<extra></extra>"))
    figure.update_layout(
        title=f"Direct contributions<br><sub>to the {plot_text(result.metric_label)}</sub>",
        xaxis_title="contribution (logit units)", height=80 + 26 * len(ranked),
        margin=dict(l=10, r=60, t=50, b=10))
    return figure


def dla_heads(result: DLAResult, position: int) -> go.Figure:
    """Every head's direct contribution at `position` as a layer x head heatmap."""
    grid = result.head_grid(position)
    limit = max(float(grid.abs().max()), 1e-6)
    figure = go.Figure(go.Heatmap(
        z=grid.tolist(), x=[f"H{h}" for h in range(result.n_heads)],
        y=[f"L{layer}" for layer in range(result.n_layers)], colorscale="RdBu", zmid=0,
        zmin=-limit, zmax=limit, colorbar=dict(title="logit"),
        hovertemplate="L%{y} %{x}: %{z:+.4f}<extra></extra>"))
    figure.update_layout(
        title=(f"Each head's direct contribution<br><sub>to the "
               f"{plot_text(result.metric_label)}</sub>"),
        xaxis_title="head", yaxis_title="layer", yaxis_autorange="reversed",
        height=120 + 30 * result.n_layers, margin=dict(l=10, r=10, t=50, b=10))
    return figure


@register_figure(DLAResult)
def dla_figure(result: DLAResult, view: str = "bars", position: int | None = None,
               top: int = 12) -> CaptionedFigure:
    """`view`: "bars" (the `top` components by size) or "heads" (layer x head), at `position`."""
    if view not in DLA_VIEWS:
        raise invalid_choice("DLA view", view, DLA_VIEWS)
    position = position_of(result, position)
    total = float(result.logit[position])
    how = (f"at position {position}: the parts add up to the model's "
           f"{md_escape(result.metric_label)} "
           f"there, {total:.3f}. Each part is what one component wrote along the answer's "
           "unembedding direction, divided by the final LayerNorm's scale in this run (frozen); "
           "blue raises it, red lowers it.")
    if view == "bars":
        return CaptionedFigure(dla_bars(result, position, top),
                               f"The {top} largest direct contributions " + how, "dla")
    return CaptionedFigure(dla_heads(result, position), "Heads' direct contributions " + how,
                           "dla_heads")
