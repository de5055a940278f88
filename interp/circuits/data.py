"""A circuit task: clean/corrupted prompt pairs of one patching task, its metric, and splits.

Circuits are found and measured on the pairs of a patching task (`interp.patching_tasks`): the
clean prompt has the behaviour, its corrupted twin (as many tokens) does not, and the metric
(logit difference by default) reads the last position. Scores are computed on the discovery
pairs and faithfulness on held-out pairs when the task has more than one pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.patching.results import PatchingMetric, metric_from_logits
from interp.patching_tasks import PatchingTask, task_inputs
from interp.tokens import SCREEN_ONLY

CIRCUIT_METRICS = ("logit_diff", "correct_prob", "kl_to_clean")
GRADIENT_METRICS = ("logit_diff", "correct_prob")


@dataclass(frozen=True)
class CircuitData:
    """Prompt pairs [pair, pos] (BOS first), their metric, and what a reader needs to name them."""

    model_name: str
    task_name: str
    clean_tokens: torch.Tensor
    corrupted_tokens: torch.Tensor
    metric: PatchingMetric
    tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    position_roles: tuple[str, ...] = ()

    @property
    def n_pairs(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean_tokens.shape[1])

    def subset(self, indices: Sequence[int]) -> CircuitData:
        """The same task on the pairs at `indices` (the metric keeps their answers)."""
        chosen = list(indices)
        metric = PatchingMetric(
            self.metric.name, tuple(self.metric.correct_ids[i] for i in chosen),
            None if self.metric.wrong_ids is None else tuple(self.metric.wrong_ids[i] for i in chosen))
        return CircuitData(self.model_name, self.task_name, self.clean_tokens[chosen],
                           self.corrupted_tokens[chosen], metric, self.tokens, self.position_roles)

    def position_label(self, position: int) -> str:
        role = self.position_roles[position] if self.position_roles else ""
        return f"{position} {role or self.tokens[position]}"


def circuit_data(model, task: PatchingTask, metric: str = "logit_diff") -> CircuitData:
    """The pairs and metric of a patching task built for `model` (noise corruption is refused:
    an edge's replacement needs a corrupted prompt to come from)."""
    if metric not in CIRCUIT_METRICS:
        raise invalid_choice("circuit metric", metric, CIRCUIT_METRICS)
    if task.uses_noise:
        raise InvalidOptionError(
            "Circuits need a corrupted prompt for every clean one; this task corrupts with noise. "
            "Choose subject corruption (fact recall) or another task.")
    inputs, chosen = task_inputs(model, task, metric)
    assert inputs.corrupted_tokens is not None  # noise tasks were refused above
    ids = inputs.clean_tokens[0].tolist()
    return CircuitData(model.name, task.name, inputs.clean_tokens, inputs.corrupted_tokens,
                       chosen, tuple(model.display_tokens(ids)), task.position_roles)


def split_pairs(n_pairs: int) -> tuple[list[int], list[int]]:
    """(discovery, held-out) pair indices: pairs alternate in blocks of two, so tasks that
    alternate two orders (IOI's ABBA/BABA) keep both in each split; one pair serves both."""
    if n_pairs < 2:
        return [0], [0]
    first = [i for i in range(n_pairs) if (i // 2) % 2 == 0]
    second = [i for i in range(n_pairs) if (i // 2) % 2 == 1]
    if not second:
        first, second = list(range(0, n_pairs, 2)), list(range(1, n_pairs, 2))
    return first, second


def check_gradient_metric(metric: PatchingMetric) -> None:
    """Refuse a metric whose gradient EAP and EAP-IG cannot use (KL to clean)."""
    if metric.name not in GRADIENT_METRICS:
        raise InvalidOptionError(
            f"Gradient estimators (EAP, EAP-IG) need a metric whose gradient is informative: "
            f"{', '.join(GRADIENT_METRICS)}. KL to the clean run has zero gradient at the clean "
            "input; use it with exact scores only.")


def pair_metric(metric: PatchingMetric, logits: torch.Tensor,
                clean_log_probs: torch.Tensor | None) -> torch.Tensor:
    """The metric [copy, pair] of last-position logits [copy * pair, d_vocab]."""
    return metric_from_logits(metric, logits, clean_log_probs)
