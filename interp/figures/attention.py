"""Figures for attention: every head at once, one head up close, lines, per-token views, head
scores, rollout and flow, and the difference of one head between two runs.

The grid of every layer x head is one heatmap of tiled patterns (fast to build and draw); inputs
longer than `GRID_CELL_CAP` tokens are shown there as block means, and a single head or layer
longer than `ZOOM_CAP` likewise, with the cap stated in the caption. Colour is attention
weight from 0 (white) to the largest value shown; hover gives layer, head, query, key, value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from interp.attention import (
    FLOW_MEANING,
    LOW_IS_NOTABLE,
    ROLLOUT_MEANING,
    SCORE_LABELS,
    SCORE_MEANING,
    WEIGHTING_LABELS,
    AttentionDifference,
    AttentionResult,
    FlowResult,
    HeadScores,
    HeadScoreTable,
    RolloutResult,
    head_label,
)
from interp.errors import InvalidOptionError, invalid_choice
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.tokens import axis_labels

GRID_CELL_CAP = 32  # tokens per side of each small map in the grid
ZOOM_CAP = 256  # tokens per side of a single head drawn in full
LAYER_CAP = 128  # tokens per side of each head when one layer is drawn in full
LINES_CAP = 128
MIN_LINE_WEIGHT = 0.02
LINE_LEVELS = 5
SEQUENTIAL_SCALE = "Blues"
VIEWS = ("grid", "layer", "head", "lines", "from_token", "to_token")
MARGIN = dict(l=10, r=10, t=50, b=10)
HIGHLIGHT = "#d62728"


def downsample(matrix: torch.Tensor, cap: int) -> tuple[np.ndarray, int]:
    """Block means of the last two axes so neither exceeds `cap`: (array, block side). Blocks cut
    off by the edge average only the cells they hold."""
    n_rows, n_cols = matrix.shape[-2:]
    block = max(1, math.ceil(max(n_rows, n_cols) / cap))
    values = matrix.float()
    if block == 1:
        return values.numpy(), 1
    rows, cols = math.ceil(n_rows / block), math.ceil(n_cols / block)
    pad = (0, cols * block - n_cols, 0, rows * block - n_rows)
    sums = torch.nn.functional.pad(values, pad).reshape(
        *values.shape[:-2], rows, block, cols, block).sum((-3, -1))
    counts = torch.nn.functional.pad(torch.ones(n_rows, n_cols), pad).reshape(
        rows, block, cols, block).sum((-3, -1))
    return (sums / counts).numpy(), block


def token_axis(tokens, positions=None) -> list[str]:
    """Escaped token labels for a heatmap axis, all of them or those at `positions`."""
    labels = [plot_text(label) for label in axis_labels(tokens)]
    return labels if positions is None else [labels[p] for p in positions]


def weighting_word(weighting: str) -> str:
    """What the colour shows: attention weights or value-weighted norms."""
    return "attention" if weighting == "attention" else "||α f(x)||"


def colour_top(values: np.ndarray, weighting: str) -> float:
    """The top of the colour scale: 1 for attention, the largest finite value for norms."""
    if weighting == "attention":
        return 1.0
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def capped_note(block: int, cap: int, where: str) -> str:
    """The caption's note when a map shows block means because the input is longer than `cap`."""
    if block == 1:
        return ""
    return (f" **Capped**: the input is longer than {cap} tokens, so {where} shows means over "
            f"blocks of {block} x {block} query-key cells; pick one head to see every cell.")


def grid_figure(result: AttentionResult, weighting: str, highlight) -> tuple[go.Figure, int]:
    """Every layer x head as small maps in one figure, and the block size of any downsampling."""
    small, block = downsample(result.weights(weighting), GRID_CELL_CAP)
    n_layers, n_heads, side, _ = small.shape
    step = side + 1
    image = np.full((n_layers * step - 1, n_heads * step - 1), np.nan)
    for layer in range(n_layers):
        for head in range(n_heads):
            image[layer * step:layer * step + side, head * step:head * step + side] = small[layer, head]
    rows, cols = np.indices(image.shape)
    # Hover: layer, head, and the first query and key position of the cell.
    custom = np.stack([rows // step, cols // step, (rows % step) * block, (cols % step) * block],
                      axis=-1).astype(np.int16)
    figure = go.Figure(go.Heatmap(
        z=image.astype(np.float32), customdata=custom, colorscale=SEQUENTIAL_SCALE, zmin=0,
        zmax=colour_top(small, weighting), colorbar=dict(title=weighting_word(weighting)),
        hoverongaps=False,
        hovertemplate=("L%{customdata[0]}H%{customdata[1]}<br>query %{customdata[2]}, key "
                       "%{customdata[3]}<br>" + weighting_word(weighting) +
                       " = %{z:.3f}<extra></extra>")))
    centres = [i * step + (side - 1) / 2 for i in range(max(n_layers, n_heads))]
    for layer, head in highlight or ():
        figure.add_shape(type="rect", x0=head * step - 0.5, x1=head * step + side - 0.5,
                         y0=layer * step - 0.5, y1=layer * step + side - 0.5,
                         line=dict(color=HIGHLIGHT, width=2))
    size = max(300, min(900, 60 * max(n_layers, n_heads)))
    figure.update_layout(
        title=f"Every head ({n_layers} layers x {n_heads} heads), {plot_text(result.model_label)}",
        xaxis=dict(tickvals=centres[:n_heads], ticktext=[f"H{h}" for h in range(n_heads)],
                   side="top", showgrid=False, zeroline=False),
        yaxis=dict(tickvals=centres[:n_layers], ticktext=[f"L{layer}" for layer in range(n_layers)],
                   autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x"),
        height=size + 100, margin={**MARGIN, "t": 90}, plot_bgcolor="white")
    return figure, block


def tiles_of_layer(result: AttentionResult, layer: int, weighting: str) -> tuple[go.Figure, int]:
    """One layer's heads side by side, and the block size of any downsampling."""
    small, block = downsample(result.weights(weighting)[layer], LAYER_CAP)
    n_heads, side, _ = small.shape
    image = np.full((side, n_heads * (side + 1) - 1), np.nan)
    for head in range(n_heads):
        image[:, head * (side + 1):head * (side + 1) + side] = small[head]
    figure = go.Figure(go.Heatmap(
        z=image, colorscale=SEQUENTIAL_SCALE, zmin=0, zmax=colour_top(small, weighting),
        hoverongaps=False, colorbar=dict(title=weighting_word(weighting)),
        hovertemplate="query %{y}, column %{x}<br>value = %{z:.3f}<extra></extra>"))
    figure.update_layout(
        title=dict(text=f"Layer {layer}, every head at full resolution", y=0.98),
        xaxis=dict(tickvals=[h * (side + 1) + (side - 1) / 2 for h in range(n_heads)],
                   ticktext=[f"H{h}" for h in range(n_heads)], side="top", showgrid=False),
        yaxis=dict(autorange="reversed", showgrid=False, title="query position"),
        height=max(250, min(500, 80 + 6 * side)), margin={**MARGIN, "t": 80},
        plot_bgcolor="white")
    return figure, block


def head_heatmap(result: AttentionResult, layer: int, head: int,
                 weighting: str) -> tuple[go.Figure, int]:
    """One head's pattern with its query and key tokens, and the block size of any downsampling."""
    small, block = downsample(result.weights(weighting)[layer, head], ZOOM_CAP)
    labels = token_axis(result.tokens, range(0, result.n_tokens, block))
    figure = go.Figure(go.Heatmap(
        z=small, x=labels, y=labels, colorscale=SEQUENTIAL_SCALE, zmin=0,
        zmax=colour_top(small, weighting), colorbar=dict(title=weighting_word(weighting)),
        hovertemplate=("query %{y}<br>key %{x}<br>" + weighting_word(weighting) +
                       " = %{z:.4f}<extra></extra>")))
    side = len(labels)
    figure.update_layout(
        title=f"{head_label(layer, head)}: {WEIGHTING_LABELS[weighting]}",
        xaxis=dict(title="key (attended to)", tickangle=-60, showgrid=False),
        yaxis=dict(title="query (attending)", autorange="reversed", showgrid=False),
        height=max(350, min(900, 160 + 14 * side)), margin=MARGIN, plot_bgcolor="white")
    return figure, block


def lines_figure(result: AttentionResult, layer: int, head: int | None, weighting: str,
                 min_weight: float) -> go.Figure:
    """Lines from query to key tokens for one head (or the layer's mean), weights above `min_weight`."""
    weights = result.weights(weighting)[layer]
    matrix = (weights.mean(0) if head is None else weights[head])[:LINES_CAP, :LINES_CAP].double()
    top = float(matrix.max()) if float(matrix.max()) > 0 else 1.0
    n = matrix.shape[0]
    labels = token_axis(result.tokens[:n])
    figure = go.Figure()
    queries, keys = torch.nonzero(matrix / top >= min_weight, as_tuple=True)
    strengths = (matrix[queries, keys] / top).numpy()
    levels = np.minimum((strengths * LINE_LEVELS).astype(int), LINE_LEVELS - 1)
    for level in range(LINE_LEVELS):  # one trace per strength level: fast for thousands of edges
        chosen = np.nonzero(levels == level)[0]
        if chosen.size == 0:
            continue
        xs, ys = [], []
        for index in chosen:
            xs += [0, 1, None]
            ys += [int(queries[index]), int(keys[index]), None]
        share = (level + 1) / LINE_LEVELS
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                    line=dict(width=0.5 + 4 * share,
                                              color=f"rgba(31,119,180,{0.15 + 0.85 * share:.2f})")))
    for x, anchor in ((0, "left"), (1, "right")):
        figure.add_trace(go.Scatter(x=[x] * n, y=list(range(n)), mode="text", text=labels,
                                    textposition=f"middle {anchor}", hoverinfo="skip",
                                    showlegend=False))
    which = "the mean of every head" if head is None else head_label(layer, head)
    figure.update_layout(
        title=f"Layer {layer}, {which}: query tokens (left) to key tokens (right)",
        xaxis=dict(visible=False, range=[-0.6, 1.6]),
        yaxis=dict(visible=False, autorange="reversed"),
        height=max(300, 22 * n + 60), margin=MARGIN, plot_bgcolor="white")
    return figure


def from_token_figure(result: AttentionResult, position: int, weighting: str) -> go.Figure:
    """Where every head looks from the token at `position`."""
    weights = result.weights(weighting)[:, :, position, :position + 1]
    rows = weights.reshape(-1, position + 1).double().numpy()
    labels = [head_label(layer, head) for layer in range(result.n_layers)
              for head in range(result.n_heads)]
    figure = go.Figure(go.Heatmap(
        z=rows, x=token_axis(result.tokens[:position + 1]), y=labels,
        colorscale=SEQUENTIAL_SCALE, zmin=0, zmax=colour_top(rows, weighting),
        colorbar=dict(title=weighting_word(weighting)),
        hovertemplate="%{y} looks at %{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(
        title=f"Where each head looks from {token_axis(result.tokens)[position]}",
        xaxis=dict(title="key (attended to)", tickangle=-60),
        yaxis=dict(title="head", autorange="reversed"),
        height=max(300, min(1200, 60 + 12 * len(labels))), margin=MARGIN)
    return figure


def looked_at(result: AttentionResult, position: int, weighting: str) -> tuple[np.ndarray, str]:
    """[layer, head] mean weight on key `position` from later queries (itself if it is last)."""
    weights = result.weights(weighting)[:, :, :, position].double()
    if position < result.n_tokens - 1:
        return weights[:, :, position + 1:].mean(-1).numpy(), "mean over the later tokens"
    return weights[:, :, position].numpy(), "from itself (it is the last token)"


def to_token_figure(result: AttentionResult, position: int, weighting: str) -> go.Figure:
    """How much each head looks at the token at `position`."""
    values, how = looked_at(result, position, weighting)
    figure = go.Figure(go.Heatmap(
        z=values, x=[f"H{h}" for h in range(result.n_heads)],
        y=[f"L{layer}" for layer in range(result.n_layers)], colorscale=SEQUENTIAL_SCALE, zmin=0,
        zmax=colour_top(values, weighting), texttemplate="%{z:.2f}",
        colorbar=dict(title=weighting_word(weighting)),
        hovertemplate="L%{y} H%{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(
        title=f"Which heads look at {token_axis(result.tokens)[position]} ({how})",
        xaxis_title="head", yaxis=dict(title="layer", autorange="reversed"),
        height=max(250, 60 + 30 * result.n_layers), margin=MARGIN)
    return figure


@register_figure(AttentionResult)
def attention_figure(result: AttentionResult, view: str = "grid", layer: int = 0,
                     head: int | None = 0, position: int | None = None,
                     weighting: str = "attention", highlight=(),
                     min_weight: float = MIN_LINE_WEIGHT) -> CaptionedFigure:
    """One view of the patterns (`VIEWS`): the grid of every head (with `highlight`ed heads
    outlined), one `layer` in full, one `head`, lines, or the views from or to a `position`."""
    if view not in VIEWS:
        raise invalid_choice("attention view", view, VIEWS)
    result.weights(weighting)  # refuses a weighting the result lacks
    what = ("Colour is the attention weight (each row sums to 1)." if weighting == "attention"
            else "Colour is each weight times the norm of what it moves, ||α_ij f(x_j)|| with "
                 "f = value vector times W_O of the head (Kobayashi et al. 2020): large weights "
                 "that move little fade.")
    if view in ("layer", "head", "lines"):
        result.check_head(layer, None if view == "layer" or head is None else head)
    position = result.n_tokens - 1 if position is None else position
    if view in ("from_token", "to_token"):
        result.check_position(position)
    if view == "grid":
        figure, block = grid_figure(result, weighting, highlight)
        marked = (f" Heads outlined in red pass the chosen head-score threshold ({len(highlight)})."
                  if highlight else "")
        caption = (f"One small map per head: rows are layers, columns heads; inside a map, rows "
                   f"are query tokens (top = first) and columns the keys they attend to. {what}"
                   f"{marked} Pick a head to zoom in.{capped_note(block, GRID_CELL_CAP, 'each map')}")
        return CaptionedFigure(figure, caption, "attention_grid")
    if view == "layer":
        figure, block = tiles_of_layer(result, layer, weighting)
        return CaptionedFigure(figure, f"Every head of layer {layer}, side by side, query rows by "
                               f"key columns. {what}{capped_note(block, LAYER_CAP, 'the layer')}",
                               f"attention_layer{layer}")
    if view == "head":
        head = 0 if head is None else head
        figure, block = head_heatmap(result, layer, head, weighting)
        return CaptionedFigure(figure, f"Rows: the token attending (query); columns: the token "
                               f"attended to (key); later keys are masked. {what}"
                               f"{capped_note(block, ZOOM_CAP, 'the map')}",
                               f"attention_{head_label(layer, head)}")
    if view == "lines":
        figure = lines_figure(result, layer, head, weighting, min_weight)
        cap = (f" Only the first {LINES_CAP} tokens are drawn." if result.n_tokens > LINES_CAP
               else "")
        which = "head-averaged layer" if head is None else "head"
        return CaptionedFigure(figure, f"Each line joins a query token (left) to a key token it "
                               f"attends to (right); thicker and darker lines are larger weights "
                               f"of the {which}. Lines under {min_weight:.0%} of the largest "
                               f"weight are left out.{cap} {what}",
                               f"attention_lines_L{layer}" + ("" if head is None else f"H{head}"))
    if view == "from_token":
        return CaptionedFigure(from_token_figure(result, position, weighting),
                               "Each row is one head (L = layer, H = head): where the chosen "
                               f"token's query puts its weight over the tokens up to it. {what}",
                               f"attention_from_{position}")
    return CaptionedFigure(to_token_figure(result, position, weighting),
                           "Each cell is one head: how much weight the tokens after the chosen "
                           f"one put on it, on average. {what}", f"attention_to_{position}")


@register_figure(HeadScores)
def head_score_heatmap(scores: HeadScores, kind: str = "previous_token",
                       threshold: float | None = None) -> CaptionedFigure:
    """Layer x head heatmap of one score, passing heads marked with a red outline."""
    values = scores.of(kind).double().numpy()
    low = kind in LOW_IS_NOTABLE
    figure = go.Figure(go.Heatmap(
        z=values, x=[f"H{h}" for h in range(scores.n_heads)],
        y=[f"L{layer}" for layer in range(scores.n_layers)],
        colorscale=SEQUENTIAL_SCALE, reversescale=low, zmin=0,
        zmax=None if low else 1.0, texttemplate="%{z:.2f}",
        colorbar=dict(title=SCORE_LABELS[kind].split(" (")[0]),
        hovertemplate="L%{y} H%{x}: %{z:.3f}<extra></extra>"))
    if threshold is not None:
        for layer in range(scores.n_layers):
            for head in range(scores.n_heads):
                value = values[layer, head]
                if (value <= threshold) if low else (value >= threshold):
                    figure.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5,
                                     y1=layer + 0.5, line=dict(color=HIGHLIGHT, width=3))
    figure.update_layout(title=f"{SCORE_LABELS[kind].capitalize()} score of every head",
                         xaxis_title="head", yaxis=dict(title="layer", autorange="reversed"),
                         height=max(250, 60 + 32 * scores.n_layers), margin=MARGIN)
    passing = "" if threshold is None else (
        f" Outlined: heads {'at most' if low else 'at least'} {threshold:g}.")
    caption = (f"{SCORE_MEANING[kind].capitalize()}, measured on "
               f"{plot_text(scores.sources[kind])}.{passing}")
    return CaptionedFigure(figure, caption, f"head_scores_{kind}")


@register_figure(HeadScoreTable)
def head_table(table: HeadScoreTable) -> CaptionedTable:
    """The head-score table with its caption."""
    frame = pd.DataFrame(table.rows, columns=list(table.header))
    if table.kind is None:
        shown = f"All {len(frame)} heads."
    elif table.threshold is None:
        shown = f"All {len(frame)} heads, most notable on {SCORE_LABELS[table.kind]} first."
    else:
        word = "at most" if table.kind in LOW_IS_NOTABLE else "at least"
        shown = (f"{len(frame)} heads whose {SCORE_LABELS[table.kind]} score is {word} "
                 f"{table.threshold:g}.")
    sources = "; ".join(f"{SCORE_LABELS[k]}: {v}" for k, v in table.sources.items())
    return CaptionedTable(frame, f"{shown} Click a column to sort. Measured on: {sources}.",
                          "head_scores")


def token_heatmap(matrix: np.ndarray, tokens, title: str, colour: str) -> go.Figure:
    """A tokens x tokens heatmap (rollout or flow)."""
    labels = token_axis(tokens)
    figure = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale=SEQUENTIAL_SCALE, zmin=0,
        colorbar=dict(title=colour),
        hovertemplate="position %{y}<br>input token %{x}<br>" + colour + " = %{z:.4f}<extra></extra>"))
    figure.update_layout(title=title, xaxis=dict(title="input token", tickangle=-60),
                         yaxis=dict(title="position", autorange="reversed"),
                         height=max(350, min(900, 160 + 14 * len(labels))), margin=MARGIN)
    return figure


@register_figure(RolloutResult)
def rollout_figure(result: RolloutResult, layer: int | None = None) -> CaptionedFigure:
    """Attention rollout up to `layer` (default the last), with its caption."""
    layer = result.rollout.shape[0] - 1 if layer is None else layer
    if not 0 <= layer < result.rollout.shape[0]:
        raise InvalidOptionError(
            f"Choose a layer from 0 to {result.rollout.shape[0] - 1}, not {layer}.")
    figure = token_heatmap(result.rollout[layer].double().numpy(), result.tokens,
                           f"Attention rollout up to layer {layer} (heads: {result.head_fusion}, "
                           f"residual {result.residual_weight:g})", "rollout")
    return CaptionedFigure(figure, ROLLOUT_MEANING, f"attention_rollout_L{layer}")


@register_figure(FlowResult)
def flow_figure(result: FlowResult) -> CaptionedFigure:
    """Attention flow to the last layer, with its caption."""
    figure = token_heatmap(result.flow.double().numpy(), result.tokens,
                           f"Attention flow to the last layer (heads: {result.head_fusion}, "
                           f"residual {result.residual_weight:g})", "flow")
    return CaptionedFigure(figure, FLOW_MEANING, "attention_flow")


@register_figure(AttentionDifference)
def difference_figure(diff: AttentionDifference) -> CaptionedFigure:
    """The second run's pattern minus the first's for one head, with its caption."""
    labels = token_axis(diff.tokens_a)
    limit = max(float(diff.difference.abs().max()), 1e-6)
    figure = go.Figure(go.Heatmap(
        z=diff.difference.double().numpy(), x=labels, y=labels, colorscale="RdBu",
        reversescale=True, zmid=0, zmin=-limit, zmax=limit, colorbar=dict(title="B - A"),
        hovertemplate="query %{y}<br>key %{x}<br>B - A = %{z:.4f}<extra></extra>"))
    figure.update_layout(title=f"{head_label(diff.layer, diff.head)}: second minus first",
                         xaxis=dict(title="key", tickangle=-60),
                         yaxis=dict(title="query", autorange="reversed"),
                         height=max(350, min(900, 160 + 14 * len(labels))), margin=MARGIN)
    differing = diff.differing_positions
    where = ("The two token sequences are identical." if not differing else
             f"Tokens differ at position(s) {', '.join(map(str, differing[:12]))}"
             f"{' ...' if len(differing) > 12 else ''}; axis labels are the first run's tokens.")
    caption = (f"Red: the second run attends more; blue: less (same head, position by position). "
               f"{where}")
    return CaptionedFigure(figure, caption, f"attention_difference_{head_label(diff.layer, diff.head)}")
