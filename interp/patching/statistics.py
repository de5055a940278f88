"""How far two patching results agree: attribution patching against exact patching.

Pearson's correlation says whether the two maps move together, Spearman's whether they rank the
components alike (ties share their average rank), and the components with the largest gaps say
where the cheap approximation is not to be trusted.
"""

from __future__ import annotations

import torch

from interp.errors import InvalidOptionError
from interp.patching.results import MethodAgreement, PatchingResult


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
    return MethodAgreement(pearson=pearson(a_finite, b_finite),
                           spearman=pearson(average_ranks(a_finite), average_ranks(b_finite)),
                           worst=worst)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant or has fewer than two values."""
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties sharing their average rank (as Spearman's correlation needs)."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    sorted_values = values[order]
    start = 0
    n = values.numel()
    while start < n:
        end = start
        while end + 1 < n and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks
