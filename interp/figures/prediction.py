"""Figures for next-token predictions."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.predictions import NextTokenPrediction


def top_k_bars(prediction: NextTokenPrediction, title: str | None = None) -> go.Figure:
    """Horizontal bars of the top-k next tokens, most likely on top."""
    labels = [f"{tok!s}" for tok in prediction.top_tokens][::-1]
    probs = list(prediction.top_probs)[::-1]
    logits = list(prediction.top_logits)[::-1]
    figure = go.Figure(go.Bar(
        x=probs, y=[f"{i + 1}. {label}" for i, label in reversed(list(enumerate(labels[::-1])))],
        orientation="h", customdata=logits,
        hovertemplate="p = %{x:.4f}<br>logit = %{customdata:.3f}<extra></extra>"))
    figure.update_layout(
        title=title or f"Next token after the prompt ({prediction.model_name})",
        xaxis_title="probability", yaxis_title=None, height=60 + 28 * len(labels),
        margin=dict(l=10, r=10, t=40, b=10))
    return figure
