"""One attribution run for the page: several methods on one prompt and target, then the checks
that say which of them to trust (faithfulness against random orders, the randomisation sanity
check, rank agreement) and the perturbation analysis of what the model generates after edits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from interp.attribution.faithfulness import (
    Faithfulness,
    RankCorrelations,
    SanityCheck,
    faithfulness_of_all,
    rank_correlations,
    sanity_check,
)
from interp.attribution.layers import LayerFlowResult, layer_flow
from interp.attribution.perturbation import PerturbationAnalysis, perturbation_analysis
from interp.attribution.results import AttributionResult, attribute, method_spec, prompt_token_ids
from interp.attribution.targets import AttributionTarget, resolve_target
from interp.errors import InterpError, InvalidOptionError

DEFAULT_METHODS = ("integrated_gradients", "gradient_x_input", "lrp", "occlusion", "shap")
# progress(fraction, text), as the page kit draws it.
RunProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class AttributionRun:
    """Every chosen method's map of one prompt and target, with the checks run on them.

    `failures`: method -> the error that stopped it (the others still ran). `faithfulness` and
    `sanity` follow `results`' order (empty when not asked for); `correlations` needs two maps.
    `flow`: the layer-wise LRP flow (of the first generated token for a continuation).
    """

    model_name: str
    prompt: str
    tokens: tuple[str, ...]
    target: AttributionTarget
    results: tuple[AttributionResult, ...]
    failures: Mapping[str, str] = field(default_factory=dict)
    faithfulness: tuple[Faithfulness, ...] = ()
    correlations: RankCorrelations | None = None
    sanity: tuple[SanityCheck, ...] = ()
    perturbation: PerturbationAnalysis | None = None
    flow: LayerFlowResult | None = None

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(r.method for r in self.results)


def stage_progress(progress: RunProgress | None, start: float, width: float, label: str):
    """A method's progress(done, total) drawn as part [start, start + width] of the whole run."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(start + width * (done / total if total else 1.0), f"{label}: {done} of {total}")

    return report


def run_attribution(model, prompt: str, methods: Sequence[str] = DEFAULT_METHODS, target=None,
                    options: Mapping[str, Mapping] | None = None, check_faithfulness: bool = True,
                    check_sanity: bool = False, perturb: bool = True,
                    perturbation_options: Mapping | None = None, flow: bool = True,
                    progress: RunProgress | None = None) -> AttributionRun:
    """Run `methods` (with `options[method]`) on `prompt` for one target (resolved once, so
    every map explains the same token), then the checks asked for. A method that fails with a
    typed error is reported in `failures`; the others go on."""
    if not methods:
        raise InvalidOptionError("Choose at least one attribution method.")
    for method in methods:
        method_spec(method)  # an unknown name fails here, listing the valid ones
    options = dict(options or {})
    token_ids = prompt_token_ids(model, prompt)
    resolved = resolve_target(model, token_ids, target)
    stages = len(methods) + check_faithfulness + check_sanity * len(methods) + perturb + flow
    width = 1.0 / stages
    results, failures = [], {}
    for index, method in enumerate(methods):
        try:
            results.append(attribute(model, token_ids, method, target=resolved,
                                     progress=stage_progress(progress, index * width, width, method),
                                     **dict(options.get(method, {}))))
        except InterpError as error:
            failures[method] = str(error)
    if not results:
        raise InvalidOptionError("Every method failed: " + "; ".join(
            f"{method}: {message}" for method, message in failures.items()))
    done = len(methods)

    def announce(text: str) -> None:
        if progress is not None:
            progress(done * width, text)

    scored: tuple = ()
    if check_faithfulness:
        announce("Faithfulness: deletion and insertion curves")
        scored = tuple(faithfulness_of_all(model, prompt, results))
        done += 1
    sanity = []
    if check_sanity:
        for result in results:
            announce(f"Sanity check of {result.method} (randomised top layers)")
            sanity.append(sanity_check(model, prompt, result, options=options.get(result.method)))
            done += 1
    perturbed = None
    if perturb:
        announce("Perturbation analysis: greedy continuations of each edit")
        perturbed = perturbation_analysis(model, prompt, resolved, **dict(perturbation_options or {}))
        done += 1
    flowed = None
    if flow:
        announce("Layer-wise flow (LRP)")
        flowed = layer_flow(model, token_ids, resolved.step(0) if resolved.is_continuation
                            else resolved, method="lrp")
    return AttributionRun(
        model_name=model.name, prompt=prompt, tokens=tuple(results[0].tokens), target=resolved,
        results=tuple(results), failures=failures, faithfulness=scored,
        correlations=rank_correlations(model, results) if len(results) > 1 else None,
        sanity=tuple(sanity), perturbation=perturbed, flow=flowed)
