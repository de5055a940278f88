"""What is done with an attribution run besides drawing it: the plain-language explanation
(which tokens matter, whether the methods agree, which to trust here and why) and CSV tables."""

from __future__ import annotations

import math

from interp.attribution.faithfulness import TOP_FRACTIONS, Faithfulness
from interp.attribution.layers import LayerFlowResult
from interp.attribution.perturbation import PerturbationAnalysis
from interp.attribution.results import AttributionResult
from interp.attribution.runs import AttributionRun
from interp.errors import invalid_choice
from interp.explain import Explanation, md_escape, register_explainer
from interp.export import matrix_to_csv, register_csv, table_to_csv
from interp.tokens import axis_labels

TOP_TOKENS = 3
AGREE = 0.5  # mean pairwise Spearman at or above this: the methods broadly agree



def top_tokens(result: AttributionResult, k: int = TOP_TOKENS) -> list[tuple[int, str, float]]:
    """The k highest-ranked tokens: (position, token, score)."""
    scores = result.scores.sum(0) if result.scores.dim() == 2 else result.scores
    return [(p, result.tokens[p], float(scores[p])) for p in result.ranking()[:k]]


def trust_verdict(scored: Faithfulness, flagged: bool | None) -> tuple[bool, str]:
    """Whether to trust one map here, and the reason in a phrase."""
    deletion = scored.deletion_aopc > scored.random_deletion_aopc
    insertion = scored.insertion_aopc > scored.random_insertion_aopc
    reasons = [f"deletion AOPC {scored.deletion_aopc:.3g} vs {scored.random_deletion_aopc:.3g} "
               f"random", f"insertion AOPC {scored.insertion_aopc:.3g} vs "
               f"{scored.random_insertion_aopc:.3g} random"]
    if flagged:
        reasons.append("barely changes when the top layers are randomised")
    return deletion and insertion and not flagged, "; ".join(reasons)


def mean_agreement(run: AttributionRun) -> float:
    """The mean of the finite pairwise Spearman correlations between methods (NaN if none)."""
    pairs = [v for _, _, v in run.correlations.pairs()] if run.correlations else []
    finite = [v for v in pairs if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


@register_explainer(AttributionRun)
def explain_run(run: AttributionRun) -> Explanation:
    """Which tokens matter, whether the methods agree, which map to trust on this input."""
    target = md_escape(run.target.label)
    lines = [f"Attribution of {target} on this prompt by {len(run.results)} method(s): "
             + ", ".join(f"`{r.method}`" for r in run.results) + ".", "", "**Which tokens matter**"]
    votes: dict[int, int] = {}
    for result in run.results:
        top = top_tokens(result)
        for position, _, _ in top:
            votes[position] = votes.get(position, 0) + 1
        listed = ", ".join(f"{md_escape(token)} ({score:.3g})" for _, token, score in top)
        lines.append(f"- `{result.method}`: {listed}")
    consensus = sorted(votes, key=lambda p: (-votes[p], p))[:TOP_TOKENS]
    lines += ["", "Named among the top three most often: " + ", ".join(
        f"{md_escape(run.tokens[p])} (position {p}, by {votes[p]} of {len(run.results)})"
        for p in consensus) + "."]
    agreement = mean_agreement(run)
    if run.correlations is not None:
        verdict = ("broadly agree" if agreement >= AGREE else "disagree")
        lines += ["", "**Do the methods agree?**",
                  f"Mean pairwise Spearman rank correlation {agreement:.2f}: they {verdict}."]
        worst = min(run.correlations.pairs(), key=lambda pair: pair[2]
                    if math.isfinite(pair[2]) else 2.0)
        lines.append(f"Least alike: `{worst[0]}` and `{worst[1]}` ({worst[2]:.2f}).")
    flagged = {check.method: check.flagged for check in run.sanity}
    trusted = []
    if run.faithfulness:
        lines += ["", "**Which to trust here**"]
        for scored in run.faithfulness:
            ok, reason = trust_verdict(scored, flagged.get(scored.method))
            if ok:
                trusted.append(scored)
            lines.append(f"- `{scored.method}`: {'trust' if ok else 'doubt'} ({reason}).")
        if trusted:
            best = max(trusted, key=lambda s: s.deletion_aopc)
            lines.append(f"Most faithful here: `{best.method}` (its top tokens move the target "
                         "most when masked).")
        else:
            lines.append("No method beats random token orders on both curves here: read the "
                         "maps as hypotheses, and check them with occlusion or patching.")
    if not run.sanity:
        lines.append("The randomisation sanity check was not run.")
    if run.failures:
        lines += ["", "Failed: " + "; ".join(f"`{m}`: {md_escape(e)}" for m, e in run.failures.items())]
    notes = dict.fromkeys(note for r in run.results for note in r.notes)
    if notes:
        lines += ["", "**What the methods can and can't show**",
                  *(f"- {md_escape(note)}" for note in notes)]
    facts = {
        "model": run.model_name, "target": run.target.label, "methods": list(run.methods),
        "top_tokens": {r.method: [t for _, t, _ in top_tokens(r)] for r in run.results},
        "mean_spearman": agreement,
        "faithfulness": {s.method: {"deletion_aopc": s.deletion_aopc,
                                    "random_deletion_aopc": s.random_deletion_aopc,
                                    "insertion_aopc": s.insertion_aopc,
                                    "random_insertion_aopc": s.random_insertion_aopc}
                         for s in run.faithfulness},
        "sanity_spearman": {c.method: c.spearman for c in run.sanity},
        "trusted": [s.method for s in trusted],
    }
    return Explanation(title=f"Attribution of {run.target.label}", markdown="\n".join(lines),
                       facts=facts)


@register_csv(AttributionResult)
def result_csv(result: AttributionResult) -> bytes:
    """position, token, id, score; a continuation: generated tokens (rows) x prompt tokens."""
    if result.scores.dim() == 2:
        generated = result.extras.get("generated_tokens") or range(result.scores.shape[0])
        return matrix_to_csv(result.scores, [str(g) for g in generated],
                             axis_labels(result.tokens), corner="generated \\ prompt")
    return table_to_csv(["position", "token", "token_id", "score"],
                        [(p, t, i, float(s)) for p, (t, i, s) in enumerate(
                            zip(result.tokens, result.token_ids, result.scores, strict=True))])


def faithfulness_rows(run: AttributionRun) -> tuple[list[str], list[list]]:
    """The faithfulness table's header and one row per method, beside its random-order baseline."""
    header = ["method", "deletion_aopc", "random_deletion_aopc", "insertion_aopc",
              "random_insertion_aopc",
              *(f"comprehensiveness_{f:.0%}" for f in TOP_FRACTIONS),
              *(f"random_comprehensiveness_{f:.0%}" for f in TOP_FRACTIONS),
              *(f"sufficiency_{f:.0%}" for f in TOP_FRACTIONS),
              *(f"random_sufficiency_{f:.0%}" for f in TOP_FRACTIONS), "sanity_spearman"]
    sanity = {c.method: c.spearman for c in run.sanity}
    rows = [[s.method, s.deletion_aopc, s.random_deletion_aopc, s.insertion_aopc,
             s.random_insertion_aopc,
             *(s.comprehensiveness[f] for f in TOP_FRACTIONS),
             *(s.random_comprehensiveness[f] for f in TOP_FRACTIONS),
             *(s.sufficiency[f] for f in TOP_FRACTIONS),
             *(s.random_sufficiency[f] for f in TOP_FRACTIONS), sanity.get(s.method)]
            for s in run.faithfulness]
    return header, rows


CSV_VIEWS = ("scores", "faithfulness", "correlations", "perturbation")


@register_csv(AttributionRun)
def run_csv(run: AttributionRun, view: str = "scores") -> bytes:
    """"scores": one row per token, one column per method; "faithfulness": one row per method;
    "correlations": the Spearman matrix; "perturbation": one row per edit."""
    if view == "scores":
        columns = [r.scores.sum(0) if r.scores.dim() == 2 else r.scores for r in run.results]
        return table_to_csv(["position", "token", *run.methods],
                            [(p, token, *(float(c[p]) for c in columns))
                             for p, token in enumerate(run.tokens)])
    if view == "faithfulness":
        return table_to_csv(*faithfulness_rows(run))
    if view == "correlations" and run.correlations is not None:
        return matrix_to_csv(run.correlations.matrix, list(run.methods), list(run.methods),
                             corner="method")
    if view == "perturbation" and run.perturbation is not None:
        return perturbation_csv(run.perturbation)
    raise invalid_choice("attribution CSV view", view, CSV_VIEWS)


@register_csv(PerturbationAnalysis)
def perturbation_csv(analysis: PerturbationAnalysis) -> bytes:
    """A perturbation analysis as CSV bytes, one row per edit."""
    return table_to_csv(["position", "token", "edited_to", "edited_prompt", "target_value",
                         "target_change", "continuation", "continuation_changed"],
                        [(r.position, r.token, r.replacement, r.prompt, r.target_value, r.change,
                          r.continuation, r.continuation_changed) for r in analysis.rows])


@register_csv(LayerFlowResult)
def flow_csv(flow: LayerFlowResult) -> bytes:
    """Relevance per site (residual stream entering each block, then attention and MLP
    outputs) and token."""
    import torch

    n = flow.n_layers
    rows = ([f"resid_pre L{layer}" for layer in range(n)] + [f"resid_post L{n - 1}"]
            + [f"attn_out L{layer}" for layer in range(n)] + [f"mlp_out L{layer}" for layer in range(n)])
    return matrix_to_csv(torch.cat([flow.residual, flow.attention, flow.mlp]), rows,
                         axis_labels(flow.tokens), corner="site")
