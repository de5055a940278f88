"""Figure of the induction check: each head's patching effect beside its induction attention.

Left, one point per head: how much patching it restores (x) against its mean attention from a
second-half token to the token after that token's first occurrence (y); induction heads sit in
the top right, and the dashed lines are the thresholds the verdicts use. Right, the listed
heads' induction attention at each second-half position.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.figures import CaptionedFigure, plot_text, register_figure
from interp.induction import InductionCheck

VERDICT_COLOURS = {"induction head": "#d62728",
                   "patching effect without induction attention": "#ff7f0e",
                   "induction attention without patching effect": "#9467bd",
                   "neither": "#7f7f7f"}


def induction_check_figure(check: InductionCheck) -> go.Figure:
    """Patching effect against induction score per head, and the listed heads' induction attention by position."""
    n_layers, n_heads = check.effects.shape
    figure = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.12,
                           subplot_titles=("Patching effect vs induction score",
                                           "Induction attention by second-half position"))
    verdicts = {(h.layer, h.head): h.verdict for h in check.heads}
    for name, colour in VERDICT_COLOURS.items():
        points = [(layer, head) for layer in range(n_layers) for head in range(n_heads)
                  if verdicts.get((layer, head), "neither") == name]
        if not points:
            continue
        figure.add_trace(go.Scatter(
            x=[float(check.effects[p]) for p in points],
            y=[float(check.induction_scores[p]) for p in points],
            mode="markers+text", name=name, marker={"color": colour, "size": 10},
            text=[f"L{layer}H{head}" for layer, head in points], textposition="top center",
            customdata=[[float(check.previous_token_scores[p])] for p in points],
            hovertemplate="%{text}<br>effect %{x:.3f}<br>induction score %{y:.3f}"
                          "<br>previous-token score %{customdata[0]:.3f}<extra></extra>"),
            row=1, col=1)
    figure.add_vline(x=check.effect_threshold, line_dash="dash", line_color="grey", row=1, col=1)
    figure.add_hline(y=check.score_threshold, line_dash="dash", line_color="grey", row=1, col=1)
    shown = check.heads
    figure.add_trace(go.Heatmap(
        z=[[float(v) for v in check.target_attention[h.layer, h.head]] for h in shown],
        x=[plot_text(label) for label in check.query_labels],
        y=[h.label for h in shown], zmin=0, zmax=1, colorscale="Viridis",
        colorbar={"title": "attention", "x": 1.02},
        hovertemplate="%{y} at %{x}: %{z:.3f}<extra></extra>"), row=1, col=2)
    figure.update_xaxes(title_text=f"patching effect ({check.direction})", row=1, col=1)
    figure.update_yaxes(title_text="induction score", row=1, col=1)
    figure.update_yaxes(autorange="reversed", row=1, col=2)
    figure.update_layout(height=420, legend={"orientation": "h", "y": -0.25},
                         margin={"t": 40, "b": 40})
    return figure


@register_figure(InductionCheck)
def induction_check_view(check: InductionCheck) -> CaptionedFigure:
    """The induction check's figure with its caption."""
    caption = (
        "Left: every head, its patching effect (x; 0 = none, 1 = restores the whole answer) "
        "against its induction score (y; mean attention from each second-half token to the "
        "token after its first occurrence, on these sequences). Heads right of the dashed line "
        "carry the answer; heads above it attend like induction heads; a head with one and not "
        "the other is coloured apart. Right: the listed heads' induction attention at each "
        "second-half position, averaged over the sequences.")
    return CaptionedFigure(induction_check_figure(check), caption, "induction_check")
