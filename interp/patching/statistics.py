"""How far two patching results agree: attribution patching against exact patching.

Pearson's correlation says whether the two maps move together, Spearman's whether they rank the
components alike (ties share their average rank), the ratio of their norms whether they are the
same size, and the components with the largest gaps say where the cheap approximation is not to
be trusted. Correlation alone can't judge agreement: a linear estimate made where the softmax is
saturated is tiny everywhere yet can still correlate.
"""

from __future__ import annotations

import math

import torch

from interp.errors import InvalidOptionError
from interp.patching.results import AGREEING_SCALE, MethodAgreement, PatchingResult

# A probability this close to 0 or 1 sits where the softmax is flat: its gradient, which
# attribution patching multiplies by the activation difference, is near zero there.
SATURATED_PROBABILITY = 0.02


def compare_methods(exact: PatchingResult, approx: PatchingResult, k: int = 5) -> MethodAgreement:
    """Correlation of two results over the same components, and the k that disagree most."""
    if (exact.site, exact.granularity) != (approx.site, approx.granularity) or \
            exact.values.shape != approx.values.shape:
        raise InvalidOptionError(
            f"Can't compare {exact.site}/{exact.granularity} {tuple(exact.values.shape)} with "
            f"{approx.site}/{approx.granularity} {tuple(approx.values.shape)}: run both methods "
            "on the same site, granularity and prompts.")
    a, b = exact.normalized.flatten().double(), approx.normalized.flatten().double()
    finite = torch.isfinite(a) & torch.isfinite(b)
    a_finite, b_finite = a[finite], b[finite]
    gap = (a - b).abs()
    gap[~finite] = -1.0
    order = torch.argsort(gap, descending=True, stable=True)[:k]
    worst = []
    for flat_index in order.tolist():
        if gap[flat_index] < 0:
            break
        index = [int(i) for i in torch.unravel_index(torch.tensor(flat_index), exact.values.shape)]
        worst.append((exact.label(index), float(a[flat_index]), float(b[flat_index])))
    exact_norm = float(a_finite.norm())
    ratio = float(b_finite.norm()) / exact_norm if exact_norm > 0 else float("nan")
    return MethodAgreement(pearson=pearson(a_finite, b_finite),
                           spearman=pearson(average_ranks(a_finite, rounding_ties(a_finite)),
                                            average_ranks(b_finite, rounding_ties(b_finite))),
                           worst=worst, scale_ratio=ratio, notes=agreement_notes(exact, ratio))


def agreement_notes(exact: PatchingResult, scale_ratio: float) -> tuple[str, ...]:
    """Why the linear estimate fails, where it visibly does."""
    notes = []
    low, high = AGREEING_SCALE
    if math.isfinite(scale_ratio) and not low <= scale_ratio <= high:
        notes.append(f"The estimate is {scale_ratio:.2g} times the size of the exact map (ratio "
                     "of their norms), so its values can't stand in for the exact ones even "
                     "where the two correlate.")
    baselines = (exact.clean_value, exact.corrupted_value)
    if exact.metric_name == "correct_prob" and any(
            p < SATURATED_PROBABILITY or p > 1 - SATURATED_PROBABILITY for p in baselines):
        notes.append(f"The correct answer's probability is saturated (clean "
                     f"{exact.clean_value:.3g}, corrupted {exact.corrupted_value:.3g}): near 0 "
                     "or 1 the softmax is flat, its gradient nearly vanishes and the linear "
                     "approximation behind attribution patching fails. Measure the logit "
                     "difference instead (give a wrong answer to compare with).")
    return tuple(notes)


# Cells of a map closer than this share of its largest |value| rank as ties: many cells of a
# patching map differ only by float rounding (the same run computed with another thread count
# moved the demo model's attn_out Spearman from 0.966 to 0.996), and their order is noise.
RANK_TIE_SHARE = 1e-5


def rounding_ties(values: torch.Tensor) -> float:
    """The tolerance under which two values rank as ties: a small share of the map's largest |value|."""
    return RANK_TIE_SHARE * float(values.abs().max()) if values.numel() else 0.0


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant or has fewer than two values."""
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def average_ranks(values: torch.Tensor, tie_tolerance: float = 0.0) -> torch.Tensor:
    """Ranks 1..n, ties sharing their average rank (as Spearman's correlation needs); values
    within `tie_tolerance` of the first of a run of sorted values are tied with it."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    sorted_values = values[order]
    start = 0
    n = values.numel()
    while start < n:
        end = start
        while end + 1 < n and sorted_values[end + 1] - sorted_values[start] <= tie_tolerance:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks
