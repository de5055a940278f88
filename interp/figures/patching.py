"""Figures for activation patching: heatmaps of how much each component restores the answer.

Colour is the normalized effect on a diverging scale centred on 0 (0 = no effect, 1 = the clean
run's value, negative = pushes the other way); hover shows the raw metric and the normalized
value. Position axes carry the clean prompt's tokens.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.errors import InvalidOptionError
from interp.patching import PatchingResult
from interp.tokens import axis_labels

DIVERGING_SCALE = "RdBu"


def symmetric_limit(result: PatchingResult) -> float:
    """Colour range +-limit covering every finite normalized value (at least +-1)."""
    finite = [abs(v) for v in result.normalized.flatten().tolist() if math.isfinite(v)]
    return max([1.0, *finite])


def heatmap(result: PatchingResult, z, raw, x_labels, y_labels, x_title: str, y_title: str,
            title: str) -> go.Figure:
    limit = symmetric_limit(result)
    figure = go.Figure(go.Heatmap(
        z=z, x=x_labels, y=y_labels, customdata=raw, colorscale=DIVERGING_SCALE,
        reversescale=True, zmid=0, zmin=-limit, zmax=limit,
        colorbar=dict(title="normalized"),
        hovertemplate=(f"{y_title} %{{y}}, {x_title} %{{x}}<br>normalized = %{{z:.3f}}<br>"
                       f"{result.metric_name} = %{{customdata:.4f}}<extra></extra>")))
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, yaxis_autorange="reversed",
        margin=dict(l=10, r=10, t=50, b=10))
    return figure


def describe(result: PatchingResult) -> str:
    kind = "path patching" if result.options.get("kind") == "path" else (
        "attribution patching" if result.method == "attribution" else "activation patching")
    return (f"{kind} of {result.site} ({result.direction}), {result.metric_name}: "
            f"clean {result.clean_value:.3f}, corrupted {result.corrupted_value:.3f}")


def layer_pos_heatmap(result: PatchingResult, title: str | None = None) -> go.Figure:
    """Layers (rows) by token positions (columns) for a "layer_pos" result."""
    if result.granularity != "layer_pos":
        raise InvalidOptionError(
            f"layer_pos_heatmap draws layer x position results, not {result.granularity!r}; "
            "use layer_head_heatmap for heads.")
    n_layers = result.values.shape[0]
    return heatmap(result, result.normalized.tolist(), result.values.tolist(),
                   axis_labels(result.tokens), [f"L{layer}" for layer in range(n_layers)],
                   "position", "layer", title or describe(result))


def layer_head_heatmap(result: PatchingResult, position: int | None = None,
                       title: str | None = None) -> go.Figure:
    """Layers (rows) by heads (columns) for a "head" result, or one position of a "head_pos" one."""
    values, normalized = result.values, result.normalized
    if result.granularity == "head_pos":
        if position is None or not 0 <= position < values.shape[-1]:
            raise InvalidOptionError(
                f"This result is per position: choose a position from 0 to {values.shape[-1] - 1}.")
        values, normalized = values[..., position], normalized[..., position]
        title = title or f"{describe(result)} at position {axis_labels(result.tokens)[position]}"
    elif result.granularity != "head":
        raise InvalidOptionError(
            f"layer_head_heatmap draws layer x head results, not {result.granularity!r}; use "
            "layer_pos_heatmap for positions.")
    n_layers, n_heads = values.shape
    return heatmap(result, normalized.tolist(), values.tolist(),
                   [f"H{head}" for head in range(n_heads)],
                   [f"L{layer}" for layer in range(n_layers)], "head", "layer",
                   title or describe(result))
