"""Figures for sparse autoencoders: training curves, the feature census, a feature's card, the
features on a prompt, and seed stability."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.sae.features import FeatureReport, FeatureScan, PromptFeatures
from interp.sae.metrics import SAEMetrics
from interp.sae.stability import SeedStability
from interp.sae.training import TrainedSAE
from interp.tokens import axis_labels

MARGIN = dict(l=10, r=10, t=60, b=10)


@register_figure(TrainedSAE)
def training_curves(trained: TrainedSAE) -> CaptionedFigure:
    """Loss, L0 and explained variance per step of a training run."""
    steps = [p.step for p in trained.history]
    figure = make_subplots(rows=1, cols=3, subplot_titles=("loss", "L0", "explained variance"))
    for column, values in enumerate(([p.loss for p in trained.history],
                                     [p.l0 for p in trained.history],
                                     [p.explained_variance for p in trained.history]), start=1):
        figure.add_trace(go.Scatter(x=steps, y=values, mode="lines", showlegend=False), 1, column)
        figure.add_vline(x=trained.best_step, line_dash="dot", line_color="grey", row=1, col=column)
    figure.update_layout(title=dict(text=f"Training on {plot_text(trained.hook_name)}<br><sub>"
                                    f"{trained.config.architecture}, {trained.steps_done} steps"
                                    "</sub>", font=dict(size=15)),
                         margin=MARGIN, height=320)
    figure.update_xaxes(title_text="step")
    stopped = " Training was stopped early." if trained.stopped_early else ""
    return CaptionedFigure(figure, (
        "Held-out curves: the loss being minimised, L0 (features active per token) and explained "
        "variance (1 = perfect reconstruction). The dotted line marks the step whose state was "
        f"kept (lowest held-out loss).{stopped}"), "sae_training")


@register_figure(SAEMetrics)
def density_histogram(metrics: SAEMetrics) -> CaptionedFigure:
    """Features by log10 firing density, with dead ones counted in the caption."""
    density = metrics.density.numpy()
    alive = density[density > 0]
    figure = go.Figure(go.Histogram(x=np.log10(alive) if len(alive) else [], nbinsx=40,
                                    hovertemplate="log10 density %{x}<br>%{y} features"
                                                  "<extra></extra>"))
    figure.add_vline(x=math.log10(metrics.ultra_rare_below), line_dash="dot")
    figure.add_vline(x=math.log10(metrics.dense_above), line_dash="dot")
    figure.update_layout(title=dict(text=f"Feature density<br><sub>{metrics.dead} dead, "
                                    f"{metrics.ultra_rare} ultra-rare, {metrics.dense} dense of "
                                    f"{metrics.d_sae}</sub>", font=dict(size=15)),
                         xaxis_title="log10(fraction of tokens the feature fires on)",
                         yaxis_title="features", margin=MARGIN, height=320)
    return CaptionedFigure(figure, (
        f"How often each feature fires over {metrics.density_tokens:,} tokens. Dead features "
        "(never fired) are not drawn; the dotted lines mark ultra-rare (left, below "
        f"{metrics.ultra_rare_below:g}) and dense (right, above {metrics.dense_above:g})."),
        "sae_density")


@register_figure(FeatureScan)
def feature_table(scan: FeatureScan, by: str = "frequency", limit: int = 200) -> CaptionedTable:
    """Features sorted by `by`, at most `limit` rows, with its caption."""
    order = scan.order(by)[:limit]
    table = pd.DataFrame({"feature": order,
                          "frequency": [float(scan.frequency[i]) for i in order],
                          "max activation": [float(scan.max_activation[i]) for i in order],
                          "mean when active": [float(scan.mean_active[i]) for i in order]})
    return CaptionedTable(table, (
        f"Features sorted by {by.replace('_', ' ')} (the first {len(order)}); frequency is the "
        f"fraction of {scan.n_rows:,} tokens each fires on."), "sae_features")


@register_figure(FeatureReport)
def feature_card(report: FeatureReport) -> CaptionedFigure:
    """A feature's activation histogram and direct logit effects."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "activation (tokens where it fires)", "direct logit effect (all tokens)"))
    edges = np.asarray(report.histogram_edges)
    if len(edges) > 1:
        figure.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=list(report.histogram_counts),
                                showlegend=False, hovertemplate="activation %{x:.3g}<br>%{y} "
                                "tokens<extra></extra>"), 1, 1)
    figure.add_trace(go.Histogram(x=report.logit_effects.numpy(), nbinsx=50, showlegend=False,
                                  hovertemplate="effect %{x}<br>%{y} tokens<extra></extra>"), 1, 2)
    figure.update_layout(title=dict(text=f"Feature {report.feature}<br><sub>fires on "
                                    f"{report.frequency:.2%} of tokens, max "
                                    f"{report.max_activation:.3g}</sub>", font=dict(size=15)),
                         margin=MARGIN, height=320)
    return CaptionedFigure(figure, (
        "Left: how strongly the feature fires where it fires. Right: its decoder direction "
        "times the unembedding, for every token of the vocabulary; the tails are the tokens "
        "it pushes up and down directly (later layers and the final LayerNorm are ignored)."),
        f"sae_feature_{report.feature}")


@register_figure(PromptFeatures)
def prompt_heatmap(result: PromptFeatures) -> CaptionedFigure:
    """The chosen features' activations on each token of a prompt."""
    labels = [plot_text(t) for t in axis_labels(result.tokens)]
    values = result.activations.T.numpy() if len(result.features) else np.zeros((0, len(labels)))
    figure = go.Figure(go.Heatmap(z=values, x=labels, y=[f"F{f}" for f in result.features],
                                  colorscale="Blues", colorbar=dict(title="activation"),
                                  hovertemplate="%{y} on %{x}<br>%{z:.3f}<extra></extra>"))
    figure.update_layout(title=dict(text=f"Features on the prompt<br><sub>"
                                    f"{plot_text(result.hook_name)}</sub>", font=dict(size=15)),
                         yaxis_autorange="reversed", margin=MARGIN, height=360)
    return CaptionedFigure(figure, (
        "The features that reach the highest activations anywhere in the prompt (rows) on each "
        "token (columns); white = off."), "sae_prompt_features")


@register_figure(SeedStability)
def stability_histogram(result: SeedStability) -> CaptionedFigure:
    """Each feature's best decoder cosine in the other seed's SAE, with the match threshold."""
    figure = go.Figure(go.Histogram(x=result.best_cosine.numpy(), nbinsx=40))
    figure.add_vline(x=result.threshold, line_dash="dot")
    figure.update_layout(title=dict(text=f"Seed stability<br><sub>{result.share_matched:.0%} of "
                                    f"features matched at cosine >= {result.threshold:g}</sub>",
                                    font=dict(size=15)),
                         xaxis_title=f"best decoder cosine with seed {result.other_seed}",
                         yaxis_title="features", margin=MARGIN, height=320)
    return CaptionedFigure(figure, (
        f"For each feature of the seed-{result.seed} SAE, the closest decoder direction of an "
        f"SAE trained the same way from seed {result.other_seed}. Right of the dotted line: "
        "found by both seeds; left: by one seed only."), "sae_seed_stability")
