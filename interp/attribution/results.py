"""Attribution results, the registry of methods, and the one call that runs any of them.

`attribute(model, prompt, method, target)` scores every input token (BOS included) by its share
in the target scalar; each method registers itself under a name with `register_method`. A
continuation target is handled here for every method alike: one attribution per generated token,
stacked into a [generated token, input token] matrix.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from interp.attribution.targets import AttributionTarget, resolve_target
from interp.errors import InvalidOptionError, InvalidPromptError, invalid_choice
from interp.validation import check_prompt

# progress(done, total): called as the work advances; if it raises, the run stops cleanly.
ProgressCallback = Callable[[int, int], object]


@dataclass(frozen=True)
class AttributionResult:
    """One attribution map: a score per input token for one target.

    `scores` is a float tensor on the CPU, [n_tokens] (one per token of `tokens`, BOS first), or
    [n_generated, n_tokens] for a continuation target (row i explains generated token i, columns
    are the prompt's tokens). Positive scores raise the target, negative ones lower it.
    `target_value` is f(x), the target on the prompt; `baseline_value` is f(baseline) for methods
    that compare with a baseline (integrated gradients: sum(scores) ~ target - baseline). For a
    continuation both are sums over the generated tokens. `extras` holds method-specific numbers
    (IG's convergence delta, LRP's bias share, ...), `options` the method options used, `notes`
    what a reader should know to interpret the map.
    """

    method: str
    model_name: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    scores: torch.Tensor
    target: AttributionTarget
    target_value: float | None
    baseline_value: float | None
    extras: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        expected = (len(self.target.continuation_ids), len(self.tokens)) if self.target.is_continuation \
            else (len(self.tokens),)
        if tuple(self.scores.shape) != expected or len(self.token_ids) != len(self.tokens):
            raise ValueError(f"{self.method}: scores of shape {tuple(self.scores.shape)} for "
                             f"{len(self.tokens)} tokens; expected {expected}.")

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def description(self) -> str:
        return ATTRIBUTION_METHODS[self.method].description if self.method in ATTRIBUTION_METHODS \
            else self.method

    def ranking(self, skip_bos: bool = True) -> list[int]:
        """Token positions from most to least important (largest score first; a continuation
        ranks by the sum over generated tokens). BOS is left out unless `skip_bos=False`."""
        scores = self.scores.sum(dim=0) if self.scores.ndim == 2 else self.scores
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        return [p for p in order if not (skip_bos and p == 0 and len(order) > 1)]


AttributionFunction = Callable[..., AttributionResult]


class MethodSpec(NamedTuple):
    """A registered method: fn(model, token_ids, target, progress=None, **options)."""

    function: AttributionFunction
    description: str
    gradient_based: bool


ATTRIBUTION_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, description: str,
                    gradient_based: bool) -> Callable[[AttributionFunction], AttributionFunction]:
    """Register `fn(model, token_ids, target, *, progress=None, **options) -> AttributionResult`.

    Options are parameters with defaults (keyword-only, preferably), so `attribute` can list and
    check them; a method that takes `**options` checks its own.
    `token_ids` is the prompt (BOS first) as a tuple of ints and `target` a single-token
    `AttributionTarget` (never a continuation: `attribute` splits those). Refuses a second method
    under the same name.
    """

    def register(function: AttributionFunction) -> AttributionFunction:
        if name in ATTRIBUTION_METHODS:
            raise ValueError(f"An attribution method named {name!r} is already registered "
                             f"({ATTRIBUTION_METHODS[name].function.__name__}).")
        ATTRIBUTION_METHODS[name] = MethodSpec(function, description, gradient_based)
        return function

    return register


def method_spec(method: str) -> MethodSpec:
    """The registered method of this name; refuses unknown names, listing the valid ones."""
    if method not in ATTRIBUTION_METHODS:
        raise invalid_choice("attribution method", method, sorted(ATTRIBUTION_METHODS))
    return ATTRIBUTION_METHODS[method]


def method_options(method: str) -> dict[str, object]:
    """The options `method` takes, with their defaults (for forms and error messages)."""
    parameters = inspect.signature(method_spec(method).function).parameters
    fixed = {"model", "token_ids", "target", "progress"}
    return {name: p.default for name, p in parameters.items()
            if name not in fixed and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_options(method: str, options: Mapping[str, object]) -> None:
    """Refuse options that the method's function does not take, listing the ones it does."""
    parameters = inspect.signature(method_spec(method).function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return  # the method checks its own options
    valid = method_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) or "none"
        raise InvalidOptionError(f"{method} takes no option {', '.join(map(repr, unknown))}. "
                                 f"Its options: {listed}.")


def prompt_token_ids(model, prompt: str | Sequence[int] | torch.Tensor) -> tuple[int, ...]:
    """A prompt's token ids (BOS first): from text, checked like every page's prompt, or as given."""
    if isinstance(prompt, str):
        return check_prompt(prompt, model).token_ids
    ids = prompt.flatten().tolist() if isinstance(prompt, torch.Tensor) else list(prompt)
    if not ids:
        raise InvalidPromptError("The prompt has no tokens.")
    bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < model.info.d_vocab)]
    if bad:
        raise InvalidPromptError(f"Token ids {bad[:5]} are not in the vocabulary "
                                 f"(0 to {model.info.d_vocab - 1}).")
    if len(ids) > model.info.n_ctx:
        raise InvalidPromptError(f"The prompt is {len(ids)} tokens long; {model.info.label} reads "
                                 f"at most {model.info.n_ctx}.")
    return tuple(ids)


def attribute(model, prompt: str | Sequence[int] | torch.Tensor, method: str, target=None,
              progress: ProgressCallback | None = None, **options) -> AttributionResult:
    """Score each token of `prompt` by its share in `target` with the named method.

    `prompt`: text (checked, BOS prepended) or token ids. `method`: a key of
    `ATTRIBUTION_METHODS`. `target`: see `resolve_target` (default: the predicted next token).
    `progress(done, total)` is called as the work advances. Unknown methods or options raise
    `InvalidOptionError` listing the valid ones.
    """
    spec = method_spec(method)
    check_options(method, options)
    token_ids = prompt_token_ids(model, prompt)
    resolved = resolve_target(model, token_ids, target)
    if not resolved.is_continuation:
        return spec.function(model, token_ids, resolved, progress=progress, **options)
    return continuation_result(model, token_ids, resolved, spec, progress, options)


def continuation_result(model, token_ids: tuple[int, ...], target: AttributionTarget,
                        spec: MethodSpec, progress: ProgressCallback | None,
                        options: Mapping[str, object]) -> AttributionResult:
    """One attribution per generated token, stacked: [n_generated, n_prompt_tokens].

    Generated token i is explained on the prompt plus the i tokens generated before it; the
    matrix keeps the prompt's columns, and `extras["full_scores"]` [n_generated, n_prompt +
    n_generated - 1] also has the earlier generated tokens' columns (NaN where a token did not
    exist yet).
    """
    n_prompt, n_generated = len(token_ids), len(target.continuation_ids)
    full = torch.full((n_generated, n_prompt + n_generated - 1), float("nan"))
    steps, step_values, step_baselines = [], [], []
    for index in range(n_generated):
        prefix = (*token_ids, *target.continuation_ids[:index])
        step_progress = None if progress is None else (
            lambda done, total, index=index: progress(index * total + done, n_generated * total))
        step = spec.function(model, prefix, target.step(index), progress=step_progress, **options)
        full[index, :len(prefix)] = step.scores
        steps.append(step)
        step_values.append(step.target_value)
        step_baselines.append(step.baseline_value)
    first = steps[0]
    extras = {"full_scores": full, "step_target_values": step_values,
              "step_baseline_values": step_baselines,
              "generated_tokens": tuple(model.display_tokens(target.continuation_ids))}
    notes = tuple(dict.fromkeys(note for step in steps for note in step.notes))
    return AttributionResult(
        method=first.method, model_name=first.model_name, tokens=first.tokens,
        token_ids=token_ids, scores=full[:, :n_prompt].clone(), target=target,
        target_value=summed(step_values), baseline_value=summed(step_baselines), extras=extras,
        notes=notes, options=first.options)


def summed(values: Sequence[float | None]) -> float | None:
    """The sum of the values, or None when any of them is None."""
    present = [v for v in values if v is not None]
    return None if len(present) < len(values) else float(sum(present))
