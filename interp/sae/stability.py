"""Seed stability: do two SAEs trained the same way, from different seeds, find the same features?

A feature of the first SAE counts as matched when some decoder direction of the second has
cosine similarity >= 0.9 with it. Features without a match were found by one seed only: treat
them with more care, since the data alone did not decide them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from interp.sae.training import TrainedSAE, train_sae

MATCH_COSINE = 0.9


@dataclass(frozen=True)
class SeedStability:
    """`best_cosine` [d_sae]: for each feature of the seed-`seed` SAE, its best decoder cosine
    with the seed-`other_seed` SAE; `matched` = best_cosine >= `threshold`."""

    seed: int
    other_seed: int
    best_cosine: torch.Tensor
    threshold: float
    hook_name: str
    model_name: str

    @property
    def matched(self) -> torch.Tensor:
        return self.best_cosine >= self.threshold

    @property
    def share_matched(self) -> float:
        return float(self.matched.float().mean())


def best_cosines(first, second) -> torch.Tensor:
    """For each decoder row of SAE `first`, the max cosine with any decoder row of `second`."""
    a = first.unit_decoder_directions().detach().cpu()
    b = second.unit_decoder_directions().detach().cpu()
    return (a @ b.T).max(dim=1).values


def compare_seeds(first: TrainedSAE, second: TrainedSAE,
                  threshold: float = MATCH_COSINE) -> SeedStability:
    """How many of one SAE's features reappear (decoder cosine at least `threshold`) in one from another seed."""
    return SeedStability(seed=first.config.seed, other_seed=second.config.seed,
                         best_cosine=best_cosines(first.sae, second.sae), threshold=threshold,
                         hook_name=first.hook_name, model_name=first.model_name)


def seed_stability(buffer, trained: TrainedSAE, other_seed: int | None = None,
                   device: torch.device | str = "cpu", on_point=None,
                   cancelled=None) -> SeedStability:
    """Train once more with another seed (default: seed + 1) on `buffer` and compare."""
    seed = trained.config.seed + 1 if other_seed is None else int(other_seed)
    other = train_sae(buffer, replace(trained.config, seed=seed), device,
                      centre_input=trained.sae.config.centre_input, on_point=on_point,
                      cancelled=cancelled)
    return compare_seeds(trained, other)
