"""Figures for activation patching: heatmaps of how much each component restores the answer.

Colour is the component's effect (`PatchingResult.effect`) on a diverging scale centred on 0
(0 = no effect, 1 = full effect in the result's direction, negative = pushes the other way),
clamped to +-COLOUR_LIMIT so one wild cell (a corruption that points the wrong way) can't wash out
the rest; hover shows the true effect and the raw metric. Position axes carry the clean prompt's
tokens, or the positions' roles when prompts with different names are averaged.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from interp.errors import InvalidOptionError
from interp.explain import md_escape
from interp.figures import CaptionedFigure, CaptionedTable, plot_text, register_figure
from interp.models import display_name
from interp.patching import MethodAgreement, PatchingResult
from interp.patching.results import EFFECT_MEANING
from interp.patching.sweeps import PatchingRun, RankedComponents, task_table
from interp.patching_tasks import PatchingTask, VerbCurves
from interp.tokens import axis_labels

DIVERGING_SCALE = "RdBu"
# Effects past this are drawn in the end colour; hover still shows their value.
COLOUR_LIMIT = 1.5


def symmetric_limit(result: PatchingResult) -> float:
    """Colour range +-limit covering every finite effect, at least +-1 and at most
    +-COLOUR_LIMIT."""
    finite = [abs(v) for v in result.effect.flatten().tolist() if math.isfinite(v)]
    return min(COLOUR_LIMIT, max([1.0, *finite]))


def diverging_heatmap(result: PatchingResult, z, raw, x_labels, y_labels, x_title: str, y_title: str,
            title: str) -> go.Figure:
    """A heatmap of `z` on a scale symmetric about 0, `raw` on hover."""
    limit = symmetric_limit(result)
    figure = go.Figure(go.Heatmap(
        z=z, x=x_labels, y=y_labels, customdata=raw, colorscale=DIVERGING_SCALE,
        reversescale=True, zmid=0, zmin=-limit, zmax=limit,
        colorbar=dict(title="effect"),
        hovertemplate=(f"{y_title} %{{y}}, {x_title} %{{x}}<br>effect = %{{z:.3f}}<br>"
                       f"{result.metric_name} = %{{customdata:.4f}}<extra></extra>")))
    figure.update_layout(
        title=dict(text=title, font=dict(size=15)), xaxis_title=x_title, yaxis_title=y_title,
        yaxis_autorange="reversed", margin=dict(l=10, r=10, t=70, b=10))
    return figure


def describe(result: PatchingResult) -> str:
    """The figure title's two lines: the kind of patching, site, direction and metric."""
    kind = "path patching" if result.options.get("kind") == "path" else (
        "attribution patching" if result.method == "attribution" else "activation patching")
    # Two short lines: one long line is cut off in a half-width column or an 800 px window.
    return (f"{kind} of {result.site} ({result.direction})<br><sub>{result.metric_name}: "
            f"clean {result.clean_value:.3f}, corrupted {result.corrupted_value:.3f}</sub>")


def token_axis(tokens) -> list[str]:
    """Escaped token labels for a heatmap axis."""
    return [plot_text(label) for label in axis_labels(tokens)]


def layer_pos_heatmap(result: PatchingResult, title: str | None = None) -> go.Figure:
    """Layers (rows) by token positions (columns) for a "layer_pos" result."""
    if result.granularity != "layer_pos":
        raise InvalidOptionError(
            f"layer_pos_heatmap draws layer x position results, not {result.granularity!r}; "
            "use layer_head_heatmap for heads.")
    n_layers = result.values.shape[0]
    return diverging_heatmap(result, result.effect.tolist(), result.values.tolist(),
                   token_axis(result.tokens), [f"L{layer}" for layer in range(n_layers)],
                   "position", "layer", title or describe(result))


def layer_head_heatmap(result: PatchingResult, position: int | None = None,
                       title: str | None = None) -> go.Figure:
    """Layers (rows) by heads (columns) for a "head" result, or one position of a "head_pos" one."""
    values, effect = result.values, result.effect
    if result.granularity == "head_pos":
        if position is None or not 0 <= position < values.shape[-1]:
            raise InvalidOptionError(
                f"This result is per position: choose a position from 0 to {values.shape[-1] - 1}.")
        values, effect = values[..., position], effect[..., position]
        title = title or (f"{describe(result)}<br><sub>at position "
                          f"{token_axis(result.tokens)[position]}</sub>")
    elif result.granularity != "head":
        raise InvalidOptionError(
            f"layer_head_heatmap draws layer x head results, not {result.granularity!r}; use "
            "layer_pos_heatmap for positions.")
    n_layers, n_heads = values.shape
    return diverging_heatmap(result, effect.tolist(), values.tolist(),
                   [f"H{head}" for head in range(n_heads)],
                   [f"L{layer}" for layer in range(n_layers)], "head", "layer",
                   title or describe(result))


def head_pos_heatmap(result: PatchingResult, title: str | None = None) -> go.Figure:
    """Every head (rows, "L1 H3") by token position (columns) for a "head_pos" result."""
    if result.granularity != "head_pos":
        raise InvalidOptionError(
            f"head_pos_heatmap draws head x position results, not {result.granularity!r}.")
    n_layers, n_heads, n_pos = result.values.shape
    return diverging_heatmap(result, result.effect.reshape(-1, n_pos).tolist(),
                             result.values.reshape(-1, n_pos).tolist(), token_axis(result.tokens),
                             [f"L{layer} H{head}" for layer in range(n_layers)
                              for head in range(n_heads)],
                             "position", "head", title or describe(result))


def verb_curves_figure(curves: VerbCurves, position: int) -> go.Figure:
    """Both verbs' probabilities after patching resid_pre at `position`, layer by layer.

    Solid lines are the patched runs; dotted and dashed lines the clean and corrupted baselines.
    """
    layers = list(range(curves.correct_prob.shape[0]))
    figure = go.Figure()
    for name, values, clean, corrupted, colour in (
            (curves.correct_verb, curves.correct_prob, curves.clean_probs[0],
             curves.corrupted_probs[0], "#1f77b4"),
            (curves.wrong_verb, curves.wrong_prob, curves.clean_probs[1],
             curves.corrupted_probs[1], "#d62728")):
        label = plot_text(repr(name))
        figure.add_trace(go.Scatter(x=layers, y=values[:, position].tolist(), mode="lines+markers",
                                    name=f"P({label}) after patching", line=dict(color=colour)))
        figure.add_trace(go.Scatter(x=layers, y=[clean] * len(layers), mode="lines",
                                    name=f"P({label}) clean", line=dict(color=colour, dash="dot")))
        figure.add_trace(go.Scatter(x=layers, y=[corrupted] * len(layers), mode="lines",
                                    name=f"P({label}) corrupted",
                                    line=dict(color=colour, dash="dash")))
    figure.update_layout(
        title=f"Verb probabilities after patching resid_pre at position {position} "
              f"({plot_text(curves.tokens[position])})",
        xaxis=dict(title="layer patched", dtick=1), yaxis_title="probability", height=380,
        margin=dict(l=10, r=10, t=50, b=10))
    return figure


def heatmap(result: PatchingResult) -> go.Figure:
    """The heatmap that fits the result's granularity (layer x head, head x position, or layer x
    position)."""
    if result.granularity == "head":
        return layer_head_heatmap(result)
    if result.granularity == "head_pos":
        return head_pos_heatmap(result)
    return layer_pos_heatmap(result)


def heatmap_caption(result: PatchingResult) -> str:
    """How to read `heatmap(result)`, in the direction the user chose."""
    if result.method == "attribution":
        return ("Attribution patching: the same map estimated from one gradient, (clean - "
                "corrupted activation) x gradient of the metric. Compare it with the exact map.")
    meaning = f"Colour is the {result.direction} {EFFECT_MEANING[result.direction]}."
    if result.granularity == "head":
        layout = (f"Each cell is one attention head's `{result.site}` (row = layer, column = "
                  "head), patched at all positions at once.")
    elif result.granularity == "head_pos":
        layout = (f"Rows are attention heads, columns token positions. Each cell patches one "
                  f"head's `{result.site}` at one position"
                  + (" (for the pattern: that query's row of attention)."
                     if result.site == "pattern" else "."))
    else:
        layout = (f"Rows are layers, columns token positions of the clean prompt. Each cell "
                  f"patches `{result.site}` at one layer and one position.")
    return f"{layout} {meaning} Hover for the exact effect and the raw metric."


@register_figure(PatchingResult)
def patching_figure(result: PatchingResult) -> CaptionedFigure:
    """A patching result's heatmap with the caption for its direction."""
    suffix = "_attribution" if result.method == "attribution" else ""
    return CaptionedFigure(heatmap(result), heatmap_caption(result),
                           f"patching_{result.site}_{result.granularity}{suffix}")


@register_figure(VerbCurves)
def verb_curves_view(curves: VerbCurves, position: int | None = None) -> CaptionedFigure:
    """The agreement verb curves at `position` (default the subject's), with their caption."""
    position = curves.subject_position if position is None else position
    if not 0 <= position < len(curves.tokens):
        raise InvalidOptionError(
            f"Choose a position from 0 to {len(curves.tokens) - 1}, not {position}.")
    caption = ("Solid lines: each verb's probability when the clean residual stream (resid_pre) "
               "at this position and the chosen layer is copied into the corrupted run; dotted: "
               "the clean run, dashed: the corrupted run. At the subject, early layers restore "
               "the clean verb and later ones stop mattering once the number has moved on; at "
               "the last position it is the other way round. Computed from one engine sweep of "
               "resid_pre by layer and position, each patched run scored by both verbs' "
               "probabilities.")
    return CaptionedFigure(verb_curves_figure(curves, position), caption, "agreement_verb_curves")


@register_figure(RankedComponents)
def ranked_table(table: RankedComponents) -> CaptionedTable:
    """The components of every sweep ranked by |effect|, with its caption."""
    caption = (f"{len(table.rows)} components across all sweeps, strongest first. Effect 0 = "
               "no effect, 1 = full effect (restores the clean answer when denoising, destroys "
               "it when noising); components in residual sweeps overlap (each cell "
               "carries everything before it), so scores don't add up across rows.")
    return CaptionedTable(pd.DataFrame(table.rows, columns=table.header), caption,
                          "patching_components")


@register_figure(PatchingTask)
def task_prompts(task: PatchingTask) -> CaptionedTable:
    """The task's clean and corrupted prompts as a table, with its description."""
    caption = md_escape(task.description)
    if task.uses_noise:
        caption += (f" Corrupted run: noise of {task.noise_scale:g}x the embeddings' spread on "
                    f"positions {', '.join(map(str, task.noise_positions or ()))}.")
    return CaptionedTable(pd.DataFrame(task_table(task)), caption, "patching_task")


def headline_numbers(run: PatchingRun) -> dict[str, str]:
    """The metric on the unpatched runs, and their gap (label -> formatted value)."""
    first = run.sweeps[0].exact
    return {f"Clean {first.metric_name}": f"{first.clean_value:.4g}",
            f"Corrupted {first.metric_name}": f"{first.corrupted_value:.4g}",
            "Gap": f"{first.clean_value - first.corrupted_value:.4g}"}


def headline_caption(run: PatchingRun) -> str:
    """The caption of the unpatched runs' metric values above the sweeps."""
    first = run.sweeps[0].exact
    return (f"The metric on the unpatched runs ({md_escape(display_name(first.model_name))}, "
            f"{first.direction}). Heatmaps show each patch's "
            f"{md_escape(EFFECT_MEANING[first.direction])}.")


def agreement_summary(agreement: MethodAgreement) -> str:
    """One Markdown line: do exact and attribution patching agree on this map?"""
    verdict = "agree" if agreement.agrees else "do **not** agree"
    return (f"**Exact vs attribution** {verdict}: Pearson r = {agreement.pearson:.3f}, "
            f"Spearman = {agreement.spearman:.3f}, size ratio = {agreement.scale_ratio:.3g}.")
