"""Which attribution to trust here: faithfulness curves, a randomisation sanity check, agreement.

Faithfulness asks whether the tokens a method ranks first really drive the target: delete them
in that order (replace them by a mask token) and the target should fall fast (deletion curve;
AOPC = mean drop), insert them into a fully masked prompt and it should recover fast (insertion
curve); comprehensiveness and sufficiency read the same curves at the top k% of tokens. Each
number is set beside the same computation for random orders. The sanity check (Adebayo et al.
2018) recomputes the map on a private copy of the model whose top layers are re-initialised: a
map that barely changes does not depend on what the model learned. Spearman rank correlations
say whether methods agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from interp.attribution.masking import (
    DEFAULT_BATCH_SIZE,
    TargetEvaluator,
    feature_positions,
    mask_token_id,
    masked_rows,
)
from interp.attribution.results import AttributionResult
from interp.errors import InvalidOptionError

TOP_FRACTIONS = (0.1, 0.2, 0.5)
DEFAULT_RANDOM_ORDERS = 8
SANITY_THRESHOLD = 0.5  # Spearman at or above this after randomisation: "barely changes"


def per_token_scores(result: AttributionResult) -> torch.Tensor:
    """One score per input token: a continuation's matrix summed over the generated tokens."""
    scores = result.scores.detach().float().cpu()
    return scores.sum(0) if scores.dim() == 2 else scores


def ranked_positions(scores: torch.Tensor, positions: Sequence[int]) -> list[int]:
    """`positions` from the highest score to the lowest (ties in reading order)."""
    return sorted(positions, key=lambda p: (-float(scores[p]), p))


def aopc(curve: Sequence[float], reference: float, falling: bool) -> float:
    """Area over (deletion) or under (insertion) the perturbation curve: the mean of
    reference - value (falling) or value - reference over every step, the unedited one included."""
    sign = 1.0 if falling else -1.0
    return float(np.mean([sign * (reference - value) for value in curve]))


def top_count(fraction: float, n: int) -> int:
    """How many of `n` tokens the top `fraction` is (at least 1, at most n)."""
    return min(n, max(1, math.ceil(fraction * n)))


@dataclass(frozen=True)
class OrderCurves:
    """Deletion and insertion curves of one token order: value after k edits, k = 0..n."""

    deletion: tuple[float, ...]
    insertion: tuple[float, ...]


@dataclass(frozen=True)
class Faithfulness:
    """How faithful one attribution map is on this prompt, beside random orders.

    `deletion[k]`: the target with the method's top k tokens masked; `insertion[k]`: with only
    them unmasked (k = 0..n_features). `random_*`: the same, averaged over `n_random` random
    orders. AOPC: mean drop (deletion) or mean recovery over the fully masked value
    (insertion); higher is more faithful for both. `comprehensiveness[f]`: f(x) minus the value
    with the top f of tokens masked (higher is better); `sufficiency[f]`: f(x) minus the value
    with only them kept (lower is better).
    """

    method: str
    model_name: str
    tokens: tuple[str, ...]
    order: tuple[int, ...]
    full_value: float
    empty_value: float
    deletion: tuple[float, ...]
    insertion: tuple[float, ...]
    random_deletion: tuple[float, ...]
    random_insertion: tuple[float, ...]
    deletion_aopc: float
    insertion_aopc: float
    random_deletion_aopc: float
    random_insertion_aopc: float
    comprehensiveness: Mapping[float, float]
    sufficiency: Mapping[float, float]
    random_comprehensiveness: Mapping[float, float]
    random_sufficiency: Mapping[float, float]
    n_random: int
    notes: tuple[str, ...] = ()

    @property
    def beats_random(self) -> bool:
        """Deletion and insertion AOPC both above the random orders'."""
        return (self.deletion_aopc > self.random_deletion_aopc
                and self.insertion_aopc > self.random_insertion_aopc)


def order_curves(evaluate: TargetEvaluator, bridge, token_ids: Sequence[int],
                 positions: Sequence[int], orders: Sequence[Sequence[int]],
                 replacement_id: int) -> list[OrderCurves]:
    """Deletion and insertion curves of each order, every masked prompt in one batched run."""
    index = {p: i for i, p in enumerate(positions)}
    n = len(positions)
    masks = []
    for order in orders:
        for deleting in (True, False):
            for k in range(n + 1):
                mask = torch.full((n,), deleting)
                mask[[index[p] for p in order[:k]]] = not deleting
                masks.append(mask)
    values = evaluate(bridge, masked_rows(token_ids, torch.stack(masks), positions, replacement_id))
    if values.dim() == 2:
        values = values.sum(-1)
    curves = values.view(len(orders), 2, n + 1).tolist()
    return [OrderCurves(tuple(deletion), tuple(insertion)) for deletion, insertion in curves]


def mean_curve(curves: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """The pointwise mean of equally long curves."""
    return tuple(float(v) for v in np.mean(np.array(curves), axis=0))


def faithfulness(model, prompt: str, result: AttributionResult, n_random: int = DEFAULT_RANDOM_ORDERS,
                 seed: int = 0, replacement: str | int | None = None, output: str = "logit",
                 batch_size: int = DEFAULT_BATCH_SIZE) -> Faithfulness:
    """Deletion/insertion curves, AOPC, comprehensiveness and sufficiency of `result` on `prompt`,
    each beside `n_random` random orders; a masked token is replaced by `replacement` (default
    end-of-text) and a leading BOS token is never masked."""
    return faithfulness_of_all(model, prompt, [result], n_random, seed, replacement, output,
                               batch_size)[0]


def faithfulness_of_all(model, prompt: str, results: Sequence[AttributionResult],
                        n_random: int = DEFAULT_RANDOM_ORDERS, seed: int = 0,
                        replacement: str | int | None = None, output: str = "logit",
                        batch_size: int = DEFAULT_BATCH_SIZE) -> list[Faithfulness]:
    """`faithfulness` of several maps of the same prompt and target, sharing the random orders."""
    if not results:
        return []
    if n_random < 1:
        raise InvalidOptionError(f"n_random must be at least 1, not {n_random}.")
    token_ids = tuple(int(t) for t in model.to_tokens(prompt)[0])
    for result in results:
        if tuple(result.token_ids) != token_ids or result.target != results[0].target:
            raise InvalidOptionError(
                f"The {result.method} map was computed for another prompt or target than "
                "the others; faithfulness compares maps of one prompt and one target.")
    positions = feature_positions(model, token_ids)
    if not positions:
        raise InvalidOptionError("The prompt has no token to mask besides BOS.")
    generator = np.random.default_rng(seed)
    random_orders = [list(generator.permutation(positions)) for _ in range(n_random)]
    method_orders = [ranked_positions(per_token_scores(r), positions) for r in results]
    evaluate = TargetEvaluator(results[0].target, output, batch_size)
    replacement_id = mask_token_id(model, replacement)
    with model.exclusive() as bridge:
        curves = order_curves(evaluate, bridge, token_ids, positions,
                              method_orders + random_orders, replacement_id)
    random_curves = curves[len(results):]
    random_deletion = mean_curve([c.deletion for c in random_curves])
    random_insertion = mean_curve([c.insertion for c in random_curves])
    full, empty = curves[0].deletion[0], curves[0].insertion[0]
    n = len(positions)
    notes = [f"A removed token is replaced by {model.display_tokens([replacement_id])[0]!r}"
             f"; random baseline: the mean of {n_random} random orders."]
    if results[0].target.kind == "continuation":
        notes.append("Continuation target: the curves follow the sum of the generated tokens' "
                     "values, and tokens are ranked by their summed scores.")

    def read(curve: Sequence[float]) -> dict[float, float]:
        """f(x) minus the curve at the top fraction's step (masked: comprehensiveness; kept:
        sufficiency)."""
        return {f: full - curve[top_count(f, n)] for f in TOP_FRACTIONS}

    return [Faithfulness(
        method=result.method, model_name=model.name, tokens=tuple(result.tokens),
        order=tuple(order), full_value=full, empty_value=empty,
        deletion=c.deletion, insertion=c.insertion,
        random_deletion=random_deletion, random_insertion=random_insertion,
        deletion_aopc=aopc(c.deletion, full, falling=True),
        insertion_aopc=aopc(c.insertion, empty, falling=False),
        random_deletion_aopc=aopc(random_deletion, full, falling=True),
        random_insertion_aopc=aopc(random_insertion, empty, falling=False),
        comprehensiveness=read(c.deletion), sufficiency=read(c.insertion),
        random_comprehensiveness=read(random_deletion),
        random_sufficiency=read(random_insertion),
        n_random=n_random, notes=tuple(notes))
        for result, order, c in zip(results, method_orders, curves, strict=False)]


@dataclass(frozen=True)
class SanityCheck:
    """A map recomputed after re-initialising the top `n_layers_randomised` layers (a private
    copy of the model). `spearman`: rank correlation of the two maps over the editable tokens;
    at or above `threshold` the method is flagged: its map barely depends on those weights."""

    method: str
    model_name: str
    tokens: tuple[str, ...]
    n_layers_randomised: int
    original_scores: torch.Tensor
    randomised_scores: torch.Tensor
    spearman: float
    spearman_abs: float
    threshold: float

    @property
    def flagged(self) -> bool:
        return not math.isfinite(self.spearman) or self.spearman >= self.threshold


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors; NaN when either is constant or shorter than 2."""
    if a.numel() < 2 or float(a.std()) == 0.0 or float(b.std()) == 0.0:
        return float("nan")
    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def randomised_copy(model, n_layers: int, seed: int):
    """A private model, loaded afresh from the shared one's source, whose top `n_layers` blocks
    have random weights (each parameter redrawn from a normal with its own mean and spread).

    Loaded rather than deep-copied: a bridge that has run a backward pass holds non-leaf tensors
    that `copy.deepcopy` refuses. The shared model is never touched.
    """
    from interp.models import load_model

    if not 1 <= n_layers <= model.info.n_layers:
        raise InvalidOptionError(
            f"Randomise between 1 and {model.info.n_layers} layers, not {n_layers}.")
    private = load_model(model.info.source, device=model.info.device)
    generator = torch.Generator().manual_seed(seed)
    blocks = private.bridge.original_model.transformer.h
    with torch.no_grad():
        # The bridge's split q/k/v weights live inside each block beside GPT-2's fused ones:
        # every parameter of the block is redrawn, so whichever the forward pass reads is random.
        for block in blocks[len(blocks) - n_layers:]:
            for parameter in block.parameters():
                spread = parameter.std() if parameter.numel() > 1 else parameter.abs()
                noise = torch.randn(parameter.shape, generator=generator).to(parameter)
                parameter.copy_(parameter.mean() + spread * noise)
    return private


def sanity_check(model, prompt: str, result: AttributionResult, n_layers: int | None = None,
                 seed: int = 0, options: Mapping | None = None,
                 threshold: float = SANITY_THRESHOLD) -> SanityCheck:
    """Model-parameter randomisation test: `result.method` (with `options`) rerun on a private
    copy of the model with its top `n_layers` layers (default: the top half) re-initialised,
    explaining the same target token(s)."""
    from interp.attribution import attribute

    n_layers = n_layers or max(1, model.info.n_layers // 2)
    private = randomised_copy(model, n_layers, seed)
    try:
        again = attribute(private, prompt, result.method, target=result.target, **dict(options or {}))
    finally:
        del private
    positions = feature_positions(model, result.token_ids)
    original, randomised = per_token_scores(result)[positions], per_token_scores(again)[positions]
    return SanityCheck(
        method=result.method, model_name=model.name, tokens=tuple(result.tokens),
        n_layers_randomised=n_layers, original_scores=per_token_scores(result),
        randomised_scores=per_token_scores(again), spearman=spearman(original, randomised),
        spearman_abs=spearman(original.abs(), randomised.abs()), threshold=threshold)


@dataclass(frozen=True)
class RankCorrelations:
    """Spearman rank correlation between every pair of methods' maps (editable tokens only)."""

    methods: tuple[str, ...]
    matrix: torch.Tensor  # [n_methods, n_methods]

    def pairs(self) -> list[tuple[str, str, float]]:
        return [(a, b, float(self.matrix[i, j])) for i, a in enumerate(self.methods)
                for j, b in enumerate(self.methods) if i < j]


def rank_correlations(model, results: Sequence[AttributionResult]) -> RankCorrelations:
    """The Spearman matrix of `results` (maps of one prompt), a leading BOS left out."""
    if not results:
        raise InvalidOptionError("Rank correlations need at least one attribution map.")
    positions = feature_positions(model, results[0].token_ids)
    scores = [per_token_scores(r)[positions] for r in results]
    n = len(results)
    matrix = torch.ones(n, n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = spearman(scores[i], scores[j])
    return RankCorrelations(tuple(r.method for r in results), matrix)
