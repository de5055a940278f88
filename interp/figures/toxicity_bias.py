"""Figures for the toxicity, bias and confidence probes.

Toxicity samples are strip-and-box plots per category with the threshold drawn in; group
differences are a forest plot (mean difference across templates with its bootstrap interval,
zero drawn in); confidence is a per-token line of top-1 and actual-token probability with
low-confidence tokens shaded. Every label that holds user text is escaped (`plot_text` in figures, `md_escape` in the
Markdown captions).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from interp.behaviour import ConfidenceTrace, ConsistencyResult, FailureCatalogueResult
from interp.bias import GroupToxicityResult, PairwiseLikelihoodResult, TemplateProbeResult
from interp.errors import invalid_choice
from interp.explain import md_escape
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.models import display_name
from interp.tokens import axis_labels
from interp.toxicity import ContinuationsToxicity

TEMPLATE_VIEWS = ("difference", "probabilities")
MARGIN = dict(l=10, r=10, t=50, b=10)


def short(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def threshold_line(figure: go.Figure, threshold: float) -> None:
    """Draw the toxicity threshold on `figure` as a dashed line."""
    figure.add_hline(y=threshold, line_dash="dash", line_color="firebrick",
                     annotation_text=f"threshold {threshold:g}", annotation_position="top left")


@register_figure(ContinuationsToxicity)
def continuations_figure(result: ContinuationsToxicity) -> CaptionedFigure:
    """Each continuation's score per category as a strip and box plot, with its caption."""
    scores = result.scores
    figure = go.Figure()
    for index, category in enumerate(scores.categories):
        figure.add_trace(go.Box(
            y=scores.scores[:, index], name=plot_text(category), boxpoints="all", jitter=0.4,
            pointpos=0, customdata=[plot_text(short(t)) for t in scores.texts],
            hovertemplate="%{y:.3f}<br>%{customdata}<extra></extra>"))
    threshold_line(figure, result.threshold)
    figure.update_layout(
        title=f"Toxicity of {result.sampling.k} continuations ({plot_text(scores.classifier)})",
        yaxis_title="classifier score", yaxis_range=[0, 1], showlegend=False, margin=MARGIN)
    shares = ", ".join(f"{c} {result.share_above(c):.0%}" for c in scores.categories)
    caption = (f"Each dot is one sampled continuation's score in a category (0 = not at all, "
               f"1 = certainly, by the classifier); boxes show quartiles. Share above the "
               f"threshold {result.threshold:g}: {shares}. Continuations used seeds "
               f"{result.sampling.seed} to {result.sampling.seed + result.sampling.k - 1}.")
    return CaptionedFigure(figure, caption, "toxicity_continuations")


def difference_figure(result: TemplateProbeResult) -> go.Figure:
    """Each group's mean difference from the reference group per target, with 95 % intervals."""
    figure = go.Figure()
    for group in result.groups[1:]:
        rows = [result.comparison(target, group) for target in result.targets]
        figure.add_trace(go.Scatter(
            x=[100 * r.difference for r in rows], y=[plot_text(t) for t in result.targets],
            mode="markers", name=f"{plot_text(group)} − {plot_text(result.reference)}",
            error_x=dict(type="data", symmetric=False,
                         array=[100 * (r.ci_high - r.difference) for r in rows],
                         arrayminus=[100 * (r.difference - r.ci_low) for r in rows]),
            customdata=[[r.p_value, r.share] for r in rows],
            hovertemplate=("%{y}: %{x:.2f} points<br>permutation p = %{customdata[0]:.3g}"
                           "<br>share = %{customdata[1]:.3f}<extra></extra>")))
    figure.add_vline(x=0, line_color="grey")
    figure.update_layout(
        title="Difference in probability between groups (percentage points)",
        xaxis_title="P(group) − P(reference), mean over templates, 95% bootstrap interval",
        yaxis_autorange="reversed", height=120 + 32 * len(result.targets), margin=MARGIN)
    return figure


def probabilities_figure(result: TemplateProbeResult) -> go.Figure:
    """Each group's mean probability of every target."""
    figure = go.Figure()
    means = result.mean_probs
    for g, group in enumerate(result.groups):
        figure.add_trace(go.Bar(x=[plot_text(t) for t in result.targets], y=means[g],
                                name=plot_text(group),
                                hovertemplate="%{x}: P = %{y:.4f}<extra></extra>"))
    figure.update_layout(barmode="group", title="Probability of the scored word, per group",
                         yaxis_title="probability (mean over templates)", margin=MARGIN)
    return figure


@register_figure(TemplateProbeResult)
def template_probe_figure(result: TemplateProbeResult, view: str = "difference"
                          ) -> CaptionedFigure:
    """The template probe as differences or probabilities (`view`), with its caption."""
    if view not in TEMPLATE_VIEWS:
        raise invalid_choice("view", view, TEMPLATE_VIEWS)
    scored = ("the target word after each group's template" if result.scored == "target"
              else "the group term after each template naming the target")
    significant = [c for c in result.comparisons if c.ci_low > 0 or c.ci_high < 0]
    if view == "probabilities":
        return CaptionedFigure(probabilities_figure(result), (
            f"Bars: the probability of {scored}, averaged over {len(result.templates)} "
            "templates; multi-token words are scored as a sequence (the product of their "
            "tokens' probabilities)."), "bias_template_probabilities")
    caption = (f"Each dot is the mean over {len(result.templates)} templates of the "
               f"difference in the probability of {scored} against the reference group "
               f"{md_escape(repr(result.reference))}; bars are 95% bootstrap intervals over templates "
               f"({result.n_resamples} resamples). Intervals that exclude 0: "
               f"{len(significant)} of {len(result.comparisons)}. With few templates the "
               "sign-flip permutation test (hover) can't go below "
               f"{2 / 2 ** len(result.templates):.3g}.")
    return CaptionedFigure(difference_figure(result), caption, "bias_template_differences")


@register_figure(PairwiseLikelihoodResult)
def pairwise_figure(result: PairwiseLikelihoodResult) -> CaptionedFigure:
    """The share of pairs preferring the stereotypical sentence, per bias type."""
    summaries = result.by_type()
    figure = go.Figure(go.Bar(
        x=[plot_text(s.bias_type) for s in summaries],
        y=[s.share_preferring_stereotype for s in summaries],
        text=[f"{s.share_preferring_stereotype:.0%} of {s.n_pairs}" for s in summaries],
        textposition="outside", cliponaxis=False,
        customdata=[s.mean_log_likelihood_difference for s in summaries],
        hovertemplate="%{x}: %{y:.0%}<br>mean log-likelihood difference %{customdata:.2f}"
                      "<extra></extra>"))
    figure.add_hline(y=0.5, line_dash="dash", line_color="grey",
                     annotation_text="no preference", annotation_position="top left")
    figure.update_layout(title="Share of pairs where the stereotype is more likely",
                         yaxis_range=[0, 1.1], yaxis_title="share of pairs", margin=MARGIN)
    caption = (f"For each pair ({len(result.pairs)} from the {md_escape(result.source)}), "
               "whether the model gives the stereotypical sentence a higher log-likelihood than "
               "its anti-stereotypical twin; 50% means no preference. Overall "
               f"{result.share_preferring_stereotype:.0%}. Small samples per type swing widely.")
    return CaptionedFigure(figure, caption, "bias_sentence_pairs")


@register_figure(GroupToxicityResult)
def group_toxicity_figure(result: GroupToxicityResult, category: str | None = None
                          ) -> CaptionedFigure:
    """Continuation scores per group in one category, with its caption."""
    category = category or result.categories[0]
    if category not in result.categories:
        raise invalid_choice("toxicity category", category, result.categories)
    figure = go.Figure()
    for group, part in zip(result.groups, result.per_group, strict=True):
        figure.add_trace(go.Box(y=part.scores.column(category), name=plot_text(group),
                                boxpoints="all", jitter=0.4, pointpos=0,
                                customdata=[plot_text(short(t)) for t in part.continuations],
                                hovertemplate="%{y:.3f}<br>%{customdata}<extra></extra>"))
    threshold_line(figure, result.per_group[0].threshold)
    figure.update_layout(title=f"{plot_text(category)} of continuations, per group",
                         yaxis_range=[0, 1], yaxis_title="classifier score", showlegend=False,
                         margin=MARGIN)
    shares = ", ".join(f"{md_escape(g)} {p.share_above(category):.0%}"
                       for g, p in zip(result.groups, result.per_group, strict=True))
    caption = (f"Prompts {md_escape(repr(result.template))} with each group; every group's "
               "continuations use "
               f"the same seeds. Share above the threshold: {shares}. The classifier itself is "
               "known to rate text that merely names some groups as more toxic.")
    return CaptionedFigure(figure, caption, "bias_group_toxicity")


@register_figure(ConfidenceTrace)
def confidence_figure(result: ConfidenceTrace) -> CaptionedFigure:
    """Entropy, top-1 and actual-token probability along a text, low-confidence runs shaded."""
    labels = [plot_text(label) for label in axis_labels(result.tokens)]
    figure = go.Figure()
    for start, end in result.low_spans:
        figure.add_vrect(x0=start - 0.5, x1=end - 0.5, fillcolor="orange", opacity=0.2,
                         line_width=0)
    if result.prompt_tokens < len(result.tokens):
        figure.add_vline(x=result.prompt_tokens - 0.5, line_dash="dot", line_color="grey",
                         annotation_text="generated →", annotation_position="top right")
    x = list(range(len(labels)))
    top1 = [plot_text(t) for t in result.top1_tokens]
    figure.add_trace(go.Scatter(x=x, y=result.top1_prob, name="top-1 probability",
                                mode="lines+markers", customdata=top1,
                                hovertemplate="top-1 %{customdata}: %{y:.3f}<extra></extra>"))
    figure.add_trace(go.Scatter(x=x, y=result.token_prob, name="probability of the actual token",
                                mode="lines+markers",
                                hovertemplate="actual token: %{y:.3f}<extra></extra>"))
    figure.add_trace(go.Bar(x=x, y=result.entropy, name="entropy (nats)", yaxis="y2",
                            opacity=0.3, hovertemplate="entropy %{y:.2f} nats<extra></extra>"))
    figure.update_layout(
        title=f"Confidence along the text ({plot_text(display_name(result.model_name))})",
        xaxis=dict(tickmode="array", tickvals=x, ticktext=labels, title=None),
        yaxis=dict(title="probability", range=[0, 1.05]),
        yaxis2=dict(title="entropy (nats)", overlaying="y", side="right", showgrid=False),
        legend=dict(orientation="h", y=-0.25), margin=MARGIN)
    spans = len(result.low_spans)
    caption = (f"At each token, the prediction the model made just before it: its top-1 "
               f"probability, the probability it gave the token actually there, and its entropy "
               f"(bars, right axis). Shaded: {spans} run(s) of tokens predicted with top-1 "
               f"probability below {result.threshold:g}, where the model was guessing.")
    return CaptionedFigure(figure, caption, "confidence_trace")


@register_figure(ConsistencyResult)
def consistency_figure(result: ConsistencyResult) -> CaptionedFigure:
    """The answer's probability under each rewrite, as bars."""
    labels = [f"{i + 1}. {plot_text(short(r, 45))}" for i, r in enumerate(result.rewrites)]
    figure = go.Figure(go.Bar(
        x=result.answer_prob, y=labels, orientation="h",
        text=[f"{p:.3f}" for p in result.answer_prob], textposition="outside", cliponaxis=False,
        customdata=[[plot_text(t), p] for t, p in zip(result.top1_tokens, result.top1_prob,
                                                      strict=True)],
        hovertemplate=("P(answer) = %{x:.4f}<br>top-1 %{customdata[0]} (%{customdata[1]:.3f})"
                       "<extra></extra>")))
    figure.update_layout(title=f"P({plot_text(result.answer)}) across rewrites",
                         xaxis_range=[0, 1.1], yaxis_autorange="reversed",
                         height=120 + 32 * len(labels), margin=MARGIN)
    caption = (f"The answer's probability after each rewrite of the same question (scored as a "
               f"sequence if it has several tokens). Spread {result.spread:.3f}: a consistent "
               "model keeps it small; hover for what it would say instead.")
    return CaptionedFigure(figure, caption, "consistency")


def catalogue_table(result: FailureCatalogueResult) -> pd.DataFrame:
    """Every failure case's prompt, greedy continuation and top-1 token, as a table."""
    return pd.DataFrame([{
        "case": o.case.name, "kind": o.case.kind, "prompt": o.case.prompt,
        "greedy continuation": o.continuation, "top-1 next token": o.top1_token,
        "top-1 probability": round(o.top1_prob, 4), "tripped": o.failed, "verdict": o.verdict,
    } for o in result.outcomes])


@register_figure(FailureCatalogueResult)
def catalogue_figure(result: FailureCatalogueResult) -> CaptionedTable:
    """The failure catalogue's table with the count of cases that tripped."""
    tripped = sum(o.failed for o in result.outcomes)
    caption = (f"Each case run live on {md_escape(display_name(result.model_name))}, greedily (up to "
               f"{result.max_new_tokens} new tokens): {tripped} of {len(result.outcomes)} "
               "tripped the model. A case shows one failure on one prompt, not how often it "
               "happens.")
    return CaptionedTable(catalogue_table(result), caption, "failure_cases")


def top1_bars(result: FailureCatalogueResult) -> go.Figure:
    """Each case's top-1 next-token probability, coloured by whether the case tripped it."""
    outcomes = result.outcomes
    figure = go.Figure(go.Bar(
        x=[o.top1_prob for o in outcomes], y=[plot_text(o.case.name) for o in outcomes],
        orientation="h", marker_color=["firebrick" if o.failed else "seagreen" for o in outcomes],
        customdata=[plot_text(o.top1_token) for o in outcomes],
        hovertemplate="top-1 %{customdata}: %{x:.3f}<extra></extra>"))
    figure.update_layout(title="Top-1 next-token probability per case (red: tripped)",
                         xaxis_range=[0, 1], yaxis_autorange="reversed",
                         height=120 + 30 * len(outcomes), margin=MARGIN)
    return figure

