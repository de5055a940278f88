"""Patching sweeps: several sites patched for one task, each optionally checked by attribution.

Activation patching answers "which component carries the information behind this answer?" one
site at a time; a sweep runs the exact engine over each chosen site (residual stream, attention
and MLP outputs, heads) for one clean/corrupted task, and, where asked, attribution patching's
one-gradient estimate beside it with their agreement. The ranked table lists the components of
every sweep whose effect (0 = none, 1 = full, in the run's direction) reaches a threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from interp.errors import InterpError, InvalidOptionError, invalid_choice
from interp.induction import INDUCTION_CORRUPTIONS, InductionCheck, check_induction
from interp.patching import (
    DIRECTIONS,
    MethodAgreement,
    PatchingResult,
    attribution_patch,
    compare_methods,
    patch,
    patch_metrics,
)
from interp.patching_tasks import (
    IOI_CORRUPTIONS,
    METRICS,
    KnownFact,
    PatchingTask,
    VerbCurves,
    agreement_verb_curves,
    task_inputs,
    verb_curves_from,
    verb_metrics,
)

TASK_LABELS = {"agreement": "Subject-verb agreement", "ioi": "Indirect object (IOI)",
               "fact": "Fact recall", "induction": "Induction (repeated tokens)",
               "custom": "Custom pair"}
FACT_COLUMNS = ("prompt", "subject", "answer")
# What can be swept: label -> (site, granularity). The first four run by default; the others
# split a head into its parts or its positions (path patching needs sender and receiver choices:
# `interp.patching.path`).
SWEEPS = {
    "Residual stream (resid_pre)": ("resid_pre", "layer_pos"),
    "Attention output (attn_out)": ("attn_out", "layer_pos"),
    "MLP output (mlp_out)": ("mlp_out", "layer_pos"),
    "Attention heads (z)": ("z", "head"),
    "Heads by position (z)": ("z", "head_pos"),
    "Head queries (q)": ("q", "head"),
    "Head keys (k)": ("k", "head"),
    "Head values (v)": ("v", "head"),
    "Attention patterns (pattern)": ("pattern", "head"),
}
DEFAULT_SWEEPS = tuple(SWEEPS)[:4]
CURVES_SWEEP = ("resid_pre", "layer_pos")  # what the agreement verb curves patch
AUTO_METRIC = "auto"
METRIC_HELP = {
    AUTO_METRIC: "logit difference when the task has a wrong answer, else the correct answer's "
                 "probability",
    "logit_diff": "logit of the correct answer minus the wrong one",
    "correct_prob": "probability of the correct answer",
    "kl_to_clean": "KL divergence of the patched output from the clean output (0 = clean)",
}
CORRUPTION_LABELS = {"swap": "flipped subject (ABB -> ABA)", "third_name": "third name (ABC)",
                     "subject": "another subject", "noise": "noise on the subject",
                     "shuffle": "second half shuffled", "new_second_half": "new second half",
                     "new_first_half": "new first half"}
CORRUPTION_HELP = "; ".join(f"**{CORRUPTION_LABELS[name]}**: {text}"
                            for name, text in IOI_CORRUPTIONS.items())
# What each input of a patching experiment means, for forms and API docs alike.
INPUT_HELP = {
    "corrupted_prefix": "Leave empty to flip the subject's number automatically (keys -> key). It "
                        "must have as many tokens as the text before the verb.",
    "ioi_n": "Averaging over prompts evens out quirks of single names.",
    "ioi_corruption": CORRUPTION_HELP,
    "induction_length": "Each prompt is BOS, the sequence, then the sequence again up to its "
                        "last token, which the model should predict; at most half the "
                        "model's context.",
    "induction_corruption": "; ".join(f"**{name}**: {text}"
                                      for name, text in INDUCTION_CORRUPTIONS.items()),
    "ioi_order": "ABBA names the indirect object first; 'both' alternates.",
    "fact_corruption": "**another subject**: swap the subject for one with as many tokens; "
                       "**noise on the subject**: Gaussian noise on its token embeddings "
                       "(causal tracing).",
    "fact_other": "Leave empty to pick one from the fact list.",
    "align": "Left-padding lines the prompts up from the end; positions before the difference "
             "then don't correspond.",
    "attribution": "A gradient estimate of every patch at once; its agreement with exact "
                   "patching is shown next to each heatmap.",
    "direction": "Denoising copies clean activations into the corrupted run (what is enough to "
                 "restore the answer); noising copies corrupted ones into the clean run (what "
                 "the answer needs).",
}
ALIGN_LABELS = {"none": "refuse", "left_pad": "left-pad the shorter"}
RANKED_HEADER = ("site", "component", "effect", "raw metric")

# progress(fraction done in [0, 1], what is running now)
SweepProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class SweepOutcome:
    """One swept site: exact patching, and attribution patching with its agreement (or why not)."""

    label: str
    exact: PatchingResult
    approx: PatchingResult | None = None
    agreement: MethodAgreement | None = None
    approx_error: str | None = None


@dataclass(frozen=True)
class PatchingRun:
    """Every sweep of one task; `metric` is the metric as chosen (possibly "auto")."""

    task: PatchingTask
    metric: str
    direction: str
    sweeps: tuple[SweepOutcome, ...]
    curves: VerbCurves | None = None
    induction: InductionCheck | None = None


@dataclass(frozen=True)
class RankedComponents:
    """Components of every sweep with |effect| >= threshold, strongest first.

    Each row is (site, component label, effect, raw metric value)."""

    threshold: float
    rows: tuple[tuple[str, str, float, float], ...]
    header: tuple[str, ...] = RANKED_HEADER


def task_table(task: PatchingTask) -> dict[str, tuple[str, ...]]:
    """The task's prompts and answers as columns (corrupted prompts and wrong answers if any)."""
    columns = {"clean prompt": task.clean_prompts, "correct": task.correct_answers,
               "corrupted prompt": task.corrupted_prompts, "wrong": task.wrong_answers}
    return {name: values for name, values in columns.items() if values is not None}


def facts_from_rows(rows) -> list[KnownFact]:
    """Known facts from (prompt, subject, answer) rows as a user edited them, blank prompts
    skipped."""
    return [KnownFact(str(prompt), str(subject), str(answer))
            for prompt, subject, answer in rows if str(prompt).strip()]


def resolved_metric(task: PatchingTask, metric: str) -> str:
    """The metric to compute: "auto" means the logit difference when the task has a wrong
    answer to compare with, else the correct answer's probability."""
    valid = (AUTO_METRIC, *METRICS)
    if metric not in valid:
        raise invalid_choice("metric", metric, valid)
    if metric == AUTO_METRIC:
        return "logit_diff" if task.has_wrong_answer else "correct_prob"
    return metric


def with_attribution(model, inputs, metric, label: str, exact: PatchingResult) -> SweepOutcome:
    """Add attribution patching's estimate of `exact` and their agreement; a site the estimate
    can't be made for keeps the exact map and says why."""
    try:
        approx = attribution_patch(model, inputs, metric, site=exact.site,
                                   granularity=exact.granularity, direction=exact.direction)
        return SweepOutcome(label, exact, approx, compare_methods(exact, approx))
    except InterpError as error:
        return SweepOutcome(label, exact, approx_error=str(error))


def labelled_by_role(result: PatchingResult, task: PatchingTask) -> PatchingResult:
    """`result` with its positions named by role when it averages prompts whose tokens differ
    (the first prompt's names would mislabel the others); template words keep their token."""
    if task.n_prompts < 2 or not task.position_roles:
        return result
    def by_role(tokens: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(role or token for role, token in zip(task.position_roles, tokens,
                                                           strict=True))
    return replace(result, tokens=by_role(result.tokens),
                   token_texts=by_role(result.token_texts or result.tokens), token_ids=())


def step_reporter(progress: SweepProgress | None, step: int, steps: int,
                  label: str) -> Callable[[int, int], None] | None:
    """The engine's progress(done, total) for step `step` of `steps`, as an overall fraction."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(min(1.0, (step + done / max(total, 1)) / steps),
                 f"Patching {label}: {done} of {total} components")

    return report


def run_sweeps(model, task: PatchingTask, sweeps: Sequence[str], direction: str = "denoising",
               metric: str = AUTO_METRIC, attribution: bool = True,
               progress: SweepProgress | None = None) -> PatchingRun:
    """Patch every chosen site of `SWEEPS` for `task` (plus both verbs' curves for agreement,
    and for induction the heads sweep checked against the heads' attention)."""
    if not sweeps:
        raise InvalidOptionError("Choose at least one thing to patch under 'What to patch'. "
                                 f"Valid choices: {', '.join(SWEEPS)}.")
    unknown = [label for label in sweeps if label not in SWEEPS]
    if unknown:
        raise invalid_choice("sweep", unknown[0], tuple(SWEEPS))
    if direction not in DIRECTIONS:
        raise invalid_choice("direction", direction, tuple(DIRECTIONS))
    inputs, chosen_metric = task_inputs(model, task, resolved_metric(task, metric))
    wants_curves = task.kind == "agreement"
    # The verb curves are denoising resid_pre sweeps scored by each verb's probability: when the
    # run already has that sweep, its patched runs are scored three ways at once.
    shares_curves = wants_curves and direction == "denoising" and any(
        SWEEPS[label] == CURVES_SWEEP for label in sweeps)
    steps = len(sweeps) + (1 if wants_curves and not shares_curves else 0)
    outcomes, curves = [], None
    for step, label in enumerate(sweeps):
        site, granularity = SWEEPS[label]
        reporter = step_reporter(progress, step, steps, label)
        if shares_curves and (site, granularity) == CURVES_SWEEP and curves is None:
            exact, correct, wrong = patch_metrics(
                model, inputs, (chosen_metric, *verb_metrics(task)), site=site,
                granularity=granularity, direction=direction, progress=reporter)
            curves = verb_curves_from(model, task, correct, wrong)
        else:
            exact = patch(model, inputs, chosen_metric, site=site, granularity=granularity,
                          direction=direction, progress=reporter)
        exact = labelled_by_role(exact, task)
        outcome = (with_attribution(model, inputs, chosen_metric, label, exact)
                   if attribution else SweepOutcome(label, exact))
        if outcome.approx is not None:
            outcome = replace(outcome, approx=labelled_by_role(outcome.approx, task))
        outcomes.append(outcome)
    if wants_curves and curves is None:
        curves = agreement_verb_curves(model, task, progress=step_reporter(
            progress, len(sweeps), steps, "both verbs' probabilities"))
    return PatchingRun(task=task, metric=metric, direction=direction, sweeps=tuple(outcomes),
                       curves=curves, induction=induction_check(model, task, outcomes))


def induction_check(model, task: PatchingTask, outcomes: Sequence[SweepOutcome]
                    ) -> InductionCheck | None:
    """For an induction task with a heads (z) sweep: that sweep beside the heads' attention."""
    if task.kind != "induction":
        return None
    for outcome in outcomes:
        if (outcome.exact.site, outcome.exact.granularity) == ("z", "head"):
            return check_induction(model, task, outcome.exact)
    return None


def ranked_components(run: PatchingRun, threshold: float) -> RankedComponents:
    """The exact map's components of every sweep with |effect| >= `threshold`."""
    rows = []
    for outcome in run.sweeps:
        result = outcome.exact
        for label, effect, raw in result.top_components(k=result.values.numel()):
            if abs(effect) >= threshold:
                rows.append((result.site, label, float(effect), float(raw)))
    rows.sort(key=lambda row: -abs(row[2]))
    return RankedComponents(threshold=float(threshold), rows=tuple(rows))
