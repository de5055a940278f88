"""Plain-language summaries of results, built only from the result's own numbers.

An explanation names the components with the largest effects, what share of the total effect
they hold, the clean and corrupted metric values they sit between, and what the method can and
can't show. `explain(result)` dispatches on the result's type through a registry, so each method
adds its own explainer, and an LLM-written explanation can later replace the offline template
behind the same call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from interp.induction import InductionCheck
from interp.patching import RESIDUAL_STREAM_SITES, MethodAgreement, PatchingResult
from interp.registry import TypeRegistry


@dataclass(frozen=True)
class Explanation:
    """A summary: `markdown` to show, and `facts`, every number and label the text was built from."""

    title: str
    markdown: str
    facts: dict = field(default_factory=dict)
    source: str = "template"


Explainer = Callable[..., Explanation]
REGISTRY = TypeRegistry("explanation")
EXPLAINERS: dict[type, Explainer] = REGISTRY.entries


def register_explainer(result_type: type) -> Callable[[Explainer], Explainer]:
    """Register the explainer of one result type; a second one for the same type is refused."""
    return REGISTRY.register(result_type)


def explain(result, **context) -> Explanation:
    """The explanation of any registered result type (`context` goes to its explainer). A
    model loaded from a local folder is named by the folder's last part: facts go to a remote
    explainer and into exports, and a server's paths go nowhere."""
    explanation = REGISTRY.lookup(result)(result, **context)
    model = explanation.facts.get("model")
    if isinstance(model, str):
        from interp.models import display_name  # explain is imported by light modules

        explanation.facts["model"] = display_name(model)
    return explanation


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~])")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown (and Streamlit's `$` math) so tokens show as typed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


# ---------------------------------------------------------------------------------------------
# Activation patching
# ---------------------------------------------------------------------------------------------

TOP_K = 3
SMALL_GAP = 1e-4


@dataclass(frozen=True)
class ComponentEffect:
    """One component's effect, in metric units, positive when it carries the clean behaviour:
    how far patching it moves the metric from the corrupted value towards the clean one
    (denoising), or away from the clean value towards the corrupted one (noising)."""

    label: str
    normalized: float  # the result's effect score (0 = none, 1 = full; PatchingResult.effect)
    raw: float
    effect: float
    share: float


def component_effects(result: PatchingResult) -> list[ComponentEffect]:
    """Every component, strongest |effect| first, with its share of the summed |effect|."""
    n = result.values.numel()
    listed = result.top_components(k=n)
    raws = [raw for _, _, raw in listed]
    # Some metrics fall towards the clean run (KL to clean is 0 there): orient by the gap.
    towards_clean = 1.0 if result.clean_value >= result.corrupted_value else -1.0
    if result.direction == "noising":
        effects = [towards_clean * (result.clean_value - raw) for raw in raws]
    else:
        effects = [towards_clean * (raw - result.corrupted_value) for raw in raws]
    total = sum(abs(e) for e in effects)
    rows = [ComponentEffect(label=label, normalized=float(normalized), raw=float(raw),
                            effect=float(effect), share=abs(effect) / total if total > 0 else 0.0)
            for (label, normalized, raw), effect in zip(listed, effects, strict=True)]
    return sorted(rows, key=lambda row: -abs(row.effect))


def recovered(row: ComponentEffect, direction: str) -> float:
    """The fraction of the clean-corrupted gap a component restores (denoising) or removes
    (noising): its effect score, which `top_components` already reads in the direction."""
    return row.normalized


def number(value: float) -> str:
    """Four significant digits: probabilities of 2e-5 and logit differences of 3.2 both read."""
    return f"{value:.4g}"


def percent(value: float) -> str:
    """A share as a percentage, or "n/a" when it is not finite."""
    return "n/a" if not math.isfinite(value) else f"{value:.0%}"


def method_sentence(result: PatchingResult) -> str:
    """The sentence that says how a patching result was made (direction, exact or attribution)."""
    how = ("copying the clean run's activation into the corrupted run, one component at a time "
           "(denoising)" if result.direction == "denoising" else
           "copying the corrupted run's activation into the clean run, one component at a time "
           "(noising)")
    if result.method == "attribution":
        how = ("a gradient-based linear estimate of " + how +
               " (attribution patching: two forward passes and one backward pass)")
    prompts = f"{result.n_prompts} prompts (averaged)" if result.n_prompts > 1 else "one prompt"
    return (f"Patching `{result.site}` by {result.granularity.replace('_', ' and ')} on "
            f"{prompts}, by {how}.")


def caveats(result: PatchingResult, gap: float) -> list[str]:
    """The caveats of a patching result: what its direction can and cannot show, and a small clean/corrupted gap."""
    notes = []
    if result.direction == "denoising":
        notes.append("Denoising finds components that are *sufficient* to bring the clean "
                     "behaviour back; a component that matters can still score low when another "
                     "component carries the same information.")
    else:
        notes.append("Noising finds components that are *necessary*: corrupting them breaks the "
                     "behaviour. Backup components that take over can hide that a component is "
                     "normally used.")
    if result.site in RESIDUAL_STREAM_SITES:
        notes.append("Residual-stream cells are not separate components: each holds everything "
                     "computed so far at its position, so read a row as *where* the information "
                     "sits at that layer.")
    notes.append("A large effect shows that this activation matters for this pair of prompts; it "
                 "is a correlation with the behaviour, not a circuit. How components feed each "
                 "other needs path patching.")
    if result.n_prompts == 1:
        notes.append("This is a single prompt; effects on one prompt can be idiosyncratic, so "
                     "check similar prompts before drawing conclusions.")
    else:
        notes.append(f"Values are averaged over {result.n_prompts} prompts; single prompts may "
                     "differ.")
    if result.method == "attribution":
        notes.append("Attribution patching is a first-order approximation: it can be far off "
                     "where the model is strongly nonlinear (attention patterns, layer norm, "
                     "large activation changes). Check its top components with exact patching.")
    if abs(gap) < SMALL_GAP:
        notes.append("The corruption barely changes the metric, so normalized scores divide by "
                     "almost nothing and are not meaningful. Choose a stronger corruption.")
    return notes


def agreement_lines(agreement: MethodAgreement) -> list[str]:
    """Lines comparing attribution with exact patching: correlations, size ratio, the largest gaps."""
    r = agreement.pearson
    if not math.isfinite(r):
        return ["The correlation of attribution and exact patching is undefined here (one of "
                "the maps is constant)."]
    scores = (f"Pearson r = {r:.2f}, Spearman rank correlation = {agreement.spearman:.2f}, "
              f"size ratio (estimate / exact) = {number(agreement.scale_ratio)}")
    if agreement.agrees:
        verdict = "close" if r >= 0.9 else "rough"
        lines = [f"Attribution patching and exact patching agree {verdict}ly here: {scores}."]
    else:
        lines = [f"Attribution patching does **not** agree with exact patching here: {scores}."]
    lines += [md_escape(note) for note in agreement.notes]
    if agreement.worst:
        worst = "; ".join(f"{md_escape(label)} (normalized {number(exact)} exact vs {number(approx)} estimated)"
                          for label, exact, approx in agreement.worst[:3])
        lines.append(f"They differ most at: {worst}.")
    return lines


@register_explainer(PatchingResult)
def explain_patching(result: PatchingResult, agreement: MethodAgreement | None = None,
                     top_k: int = TOP_K) -> Explanation:
    """A deterministic summary of a patching result (and of its agreement with another method)."""
    rows = component_effects(result)
    top = rows[:top_k]
    gap = result.clean_value - result.corrupted_value
    top_share = sum(row.share for row in top)
    metric = md_escape(result.metric_name)
    lines = [
        method_sentence(result),
        "",
        f"The metric ({metric}) is **{number(result.clean_value)}** on the clean run and "
        f"**{number(result.corrupted_value)}** on the corrupted run, a gap of {number(gap)}. A "
        "component's score is the fraction of that gap it "
        + ("restores" if result.direction == "denoising" else "removes") + ".",
        "",
        f"**Largest effects** (of {len(rows)} components):",
    ]
    for index, row in enumerate(top, start=1):
        verb = "restores" if result.direction == "denoising" else "removes"
        lines.append(f"{index}. {md_escape(row.label)}: {verb} {percent(recovered(row, result.direction))} "
                     f"of the gap (metric {number(row.raw)}), {percent(row.share)} of the total effect.")
    lines.append("")
    lines.append(f"Together the top {len(top)} hold {percent(top_share)} of the summed absolute "
                 f"effect of all {len(rows)} components.")
    opposite = [row for row in rows[:10] if row.effect < 0]
    if opposite:
        lines.append(f"{md_escape(opposite[0].label)} pushes the other way "
                     f"({percent(recovered(opposite[0], result.direction))} of the gap): it "
                     "favours the corrupted behaviour.")
    if agreement is not None:
        lines += ["", *agreement_lines(agreement)]
    lines += ["", "**What this can and can't show**", *(f"- {note}" for note in caveats(result, gap))]
    facts = {
        "model": result.model_name, "method": result.method, "site": result.site,
        "granularity": result.granularity, "direction": result.direction,
        "metric": result.metric_name, "clean_value": result.clean_value,
        "corrupted_value": result.corrupted_value, "gap": gap, "n_prompts": result.n_prompts,
        "n_components": len(rows), "top_share": top_share,
        "top": [{"label": r.label, "normalized": r.normalized, "raw": r.raw, "effect": r.effect,
                 "share": r.share} for r in top],
    }
    if agreement is not None:
        facts["pearson"] = agreement.pearson
        facts["spearman"] = agreement.spearman
        facts["scale_ratio"] = agreement.scale_ratio
        facts["methods_agree"] = agreement.agrees
    title = (f"{'Attribution' if result.method == 'attribution' else 'Activation'} patching of "
             f"{result.site} by {result.granularity.replace('_', ' and ')}, {result.direction}")
    return Explanation(title=title, markdown="\n".join(lines), facts=facts)


@register_explainer(InductionCheck)
def explain_induction_check(check: InductionCheck) -> Explanation:
    """Which heads both carry the induction answer and attend like induction heads."""
    found = [h for h in check.heads if h.verdict == "induction head"]
    lines = [
        "Each head's patching effect on the induction task is set beside its attention on the "
        "same sequences. An induction head should do both: restore the repeated token when "
        "patched, and attend from a second-half token to the token after that token's first "
        f"occurrence (score at least {number(check.score_threshold)}; effect at least "
        f"{number(check.effect_threshold)}).", ""]
    if found:
        lines.append("**Induction heads** (effect and attention agree): " + ", ".join(
            f"{h.label} (effect {number(h.effect)}, induction score {number(h.induction_score)})"
            for h in found) + ".")
    else:
        lines.append("No head both carries the answer and attends like an induction head here.")
    for head in check.called_out:
        lines.append(f"- {head.label}: {head.verdict} (effect {number(head.effect)}, induction "
                     f"score {number(head.induction_score)}).")
    if check.previous_token_heads:
        lines += ["", "**Previous-token heads** below them (the first step: they write which "
                  "token came before, which the induction heads' keys read): " + ", ".join(
                      f"L{layer}H{head} ({number(float(check.previous_token_scores[layer, head]))})"
                      for layer, head in check.previous_token_heads) + "."]
    lines += ["", "**What this can and can't show**",
              "- Attention says where a head looks, not what it moves; the patching effect says "
              "it matters. Together they name a head's role, but a head can also copy through "
              "another mechanism.",
              "- The scores come from these random sequences; words or longer spans may differ."]
    facts = {"model": check.model_name, "task": check.task_name, "direction": check.direction,
             "induction_heads": [h.label for h in found],
             "called_out": [{"head": h.label, "verdict": h.verdict} for h in check.called_out],
             "previous_token_heads": [f"L{layer}H{head}"
                                      for layer, head in check.previous_token_heads],
             "heads": [{"head": h.label, "effect": h.effect, "induction_score": h.induction_score,
                        "previous_token_score": h.previous_token_score} for h in check.heads]}
    return Explanation(title=f"Induction check: {check.task_name}", markdown="\n".join(lines),
                       facts=facts)
