"""Figures for next-token predictions."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.figures import CaptionedFigure, plot_text, register_figure
from interp.models import display_name
from interp.predictions import NextTokenPrediction


def probability_label(probability: float) -> str:
    """A bar's own label, so a bar too short to see on a linear axis still reads: 12.3%, 0.041%."""
    percent = 100 * probability
    return f"{percent:.1f}%" if percent >= 1 else f"{percent:.2g}%"


def top_k_bars(prediction: NextTokenPrediction, title: str | None = None) -> go.Figure:
    """Horizontal bars of the top-k next tokens, most likely on top, each labelled with its
    probability (on a linear axis everything after a confident first token is invisible)."""
    # Plotly draws the first bar at the bottom: reverse so rank 1 is on top.
    labels = [f"{rank}. {plot_text(token)}" for rank, token in enumerate(prediction.top_tokens, start=1)][::-1]
    figure = go.Figure(go.Bar(
        x=list(prediction.top_probs)[::-1], y=labels, orientation="h",
        text=[probability_label(p) for p in prediction.top_probs][::-1], textposition="outside",
        cliponaxis=False,
        customdata=list(prediction.top_logits)[::-1],
        hovertemplate="p = %{x:.4f}<br>logit = %{customdata:.3f}<extra></extra>"))
    figure.update_layout(
        title=title or f"Next token<br><sub>after the prompt, {plot_text(display_name(prediction.model_name))}</sub>",
        xaxis_title="probability", yaxis_title=None, height=80 + 28 * len(labels),
        margin=dict(l=10, r=60, t=60, b=10))
    return figure


@register_figure(NextTokenPrediction)
def prediction_figure(prediction: NextTokenPrediction) -> CaptionedFigure:
    """The next-token top-k as bars, with the entropy in the caption."""
    caption = (f"Bars are probabilities of the next token over the whole vocabulary; hover for "
               f"the logit. Entropy {prediction.entropy_nats:.2f} nats (lower = more certain).")
    return CaptionedFigure(top_k_bars(prediction), caption, "next_token")
