"""What activation patching takes and gives: sites, metrics, corrupted inputs and results.

A patching experiment is a clean prompt set, a way to corrupt it (other prompts, or Gaussian noise
on some embeddings as in causal tracing), and a metric read at the last position; its result
holds the patched metric for every component with the clean and corrupted values that give it
meaning (`normalized`: 0 = the corrupted run's value, 1 = the clean run's). Its `effect` reads
the same numbers per direction, 0 = no effect and 1 = full effect: the share of the clean answer a
patch restores (denoising) or destroys (noising).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from interp.errors import InvalidOptionError, InvalidPromptError, invalid_choice
from interp.tokens import SCREEN_ONLY

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v",
         "pattern")
RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
# The residual stream itself (each cell holds everything computed so far), as opposed to the
# outputs of one attention layer or MLP that RESIDUAL_SITES also holds.
RESIDUAL_STREAM_SITES = ("resid_pre", "resid_mid", "resid_post")
HEAD_SITES = ("z", "q", "k", "v", "pattern")
GRANULARITIES = ("layer_pos", "layer", "head", "head_pos")
RESIDUAL_GRANULARITIES = ("layer_pos", "layer")
HEAD_GRANULARITIES = ("head", "head_pos")
DIRECTIONS = ("denoising", "noising")
METRICS = ("logit_diff", "correct_prob", "kl_to_clean")
RECEIVER_INPUTS = ("q", "k", "v")
FINAL_RESIDUAL = "resid_final"

# What a component's effect (PatchingResult.effect) means in each direction, for captions and text.
EFFECT_MEANING = {
    "denoising": "effect 1 = the patch restores the clean answer fully, 0 = no effect, negative = "
                 "it pushes further towards the corrupted answer",
    "noising": "effect 1 = the patch destroys the clean answer fully (the corrupted run's value), "
               "0 = no effect (the clean value stays), negative = it makes the clean answer "
               "stronger still",
}
# Metrics for which the clean run should score higher than the corrupted one (KL to clean is 0
# on the clean run, so its gap is negative by design).
HIGHER_IS_CLEAN = ("logit_diff", "correct_prob")

# Causal tracing's noise (Meng et al. 2022): 3 x the spread of the token embeddings.
DEFAULT_NOISE_SCALE = 3.0


@dataclass(frozen=True)
class PatchingMetric:
    """What a patched run is scored by, at the last position, averaged over prompts.

    `logit_diff`: logit[correct] - logit[wrong]; `correct_prob`: softmax probability of the
    correct token; `kl_to_clean`: KL(clean || patched) of the next-token distributions (0 means
    the clean behaviour). One answer token per prompt.
    """

    name: str
    correct_ids: tuple[int, ...]
    wrong_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.name not in METRICS:
            raise invalid_choice("patching metric", self.name, METRICS)
        if not self.correct_ids:
            raise InvalidOptionError("The metric needs one correct answer token per prompt.")
        if self.name == "logit_diff":
            if self.wrong_ids is None or len(self.wrong_ids) != len(self.correct_ids):
                raise InvalidOptionError(
                    "The logit difference needs one wrong answer token per prompt, as many as "
                    f"correct ones ({len(self.correct_ids)}).")
        elif self.wrong_ids is not None:
            raise InvalidOptionError(
                f"The {self.name} metric reads only the correct answer; leave wrong_ids empty "
                "or use logit_diff_metric.")


def logit_diff_metric(correct_ids: Sequence[int], wrong_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of logit[correct] - logit[wrong] at the last position."""
    return PatchingMetric("logit_diff", tuple(int(i) for i in correct_ids),
                          tuple(int(i) for i in wrong_ids))


def correct_prob_metric(correct_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of the probability of the correct answer at the last position."""
    return PatchingMetric("correct_prob", tuple(int(i) for i in correct_ids))


def kl_metric(correct_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of KL(clean || patched) at the last position (0 = clean behaviour).

    `correct_ids` only records the answer for the reader; the KL uses the whole distribution.
    """
    return PatchingMetric("kl_to_clean", tuple(int(i) for i in correct_ids))


@dataclass(frozen=True)
class NoiseCorruption:
    """Causal tracing's corruption (Meng et al. 2022): Gaussian noise on some token embeddings.

    The noise has standard deviation `scale` times the std of the model's token embedding
    matrix, is drawn from a generator seeded with `seed` (so the same settings give the same
    corrupted run; each prompt of a dataset gets its own draw), and is added at `positions`
    only (BOS = position 0).
    """

    positions: tuple[int, ...]
    scale: float = DEFAULT_NOISE_SCALE
    seed: int = 0

    def __post_init__(self):
        if not self.positions:
            raise InvalidOptionError("Choose at least one token position to add noise to.")
        if len(set(self.positions)) != len(self.positions):
            raise InvalidOptionError(f"Noise positions repeat: {self.positions}. List each once.")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidOptionError(f"The noise scale must be a positive number, not {self.scale}.")


@dataclass(frozen=True)
class PatchingInputs:
    """Clean prompts and how to corrupt them: token ids [n_prompts, pos] (BOS first), or noise."""

    clean_tokens: torch.Tensor
    corrupted_tokens: torch.Tensor | None = None
    noise: NoiseCorruption | None = None

    def __post_init__(self):
        if (self.corrupted_tokens is None) == (self.noise is None):
            raise InvalidOptionError(
                "Give exactly one corruption: corrupted prompts (corrupted_tokens) or noise on "
                "the clean prompts' embeddings (noise=NoiseCorruption(...)).")
        if self.clean_tokens.ndim != 2 or self.clean_tokens.shape[1] == 0:
            raise InvalidPromptError(
                "Clean tokens must be a [n_prompts, pos] tensor of token ids with at least one "
                f"token; got shape {tuple(self.clean_tokens.shape)}.")
        if self.corrupted_tokens is not None and self.corrupted_tokens.shape != self.clean_tokens.shape:
            raise InvalidPromptError(
                f"The clean prompts have {self.clean_tokens.shape[-1]} tokens and the corrupted "
                f"ones {self.corrupted_tokens.shape[-1]} (shapes {tuple(self.clean_tokens.shape)} "
                f"and {tuple(self.corrupted_tokens.shape)}). Prompts of different token lengths "
                "can't be patched position by position: reword the corrupted prompt so each "
                "prompt pair has the same number of tokens.")
        if self.noise is not None:
            n_pos = self.clean_tokens.shape[1]
            outside = [p for p in self.noise.positions if not 0 <= p < n_pos]
            if outside:
                raise InvalidOptionError(
                    f"Noise positions {outside} are outside the prompt (positions 0 to "
                    f"{n_pos - 1}).")

    @property
    def n_prompts(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.clean_tokens.shape[1])

    @property
    def first_corrupted_position(self) -> int:
        """The first position where the clean and corrupted runs can differ, in any prompt.

        Attention is causal, so before it both runs compute the same activations and a patch
        there changes nothing. n_positions when the runs are the same prompts.
        """
        if self.noise is not None:
            return min(self.noise.positions)
        assert self.corrupted_tokens is not None  # inputs have corrupted tokens or noise
        differs = (self.clean_tokens != self.corrupted_tokens).any(dim=0)
        changed = torch.nonzero(differs).flatten()
        return int(changed[0]) if changed.numel() else self.n_positions


@dataclass(frozen=True)
class PatchingResult:
    """The patched metric for every component, with the baselines needed to read it.

    `values` (mean over prompts) has shape [layer, pos] (granularity "layer_pos"), [layer]
    ("layer"), [layer, head] ("head") or [layer, head, pos] ("head_pos"; for the pattern site,
    pos is the destination position). `normalized` = (values - corrupted_value) /
    (clean_value - corrupted_value): 1 is the clean run's value, 0 the corrupted run's, for
    either direction. NaN marks components that can't act (path patching senders at or after
    every receiver's layer); `normalized` is all NaN when the clean and corrupted values are
    equal (nothing to restore). `tokens` are the clean prompt's tokens as shown on screen;
    `token_texts` and `token_ids` are what exports write (role names such as "IO" where the
    result averages prompts whose tokens differ, and then no ids).
    """

    model_name: str
    method: str
    site: str
    granularity: str
    direction: str
    metric_name: str
    values: torch.Tensor
    normalized: torch.Tensor
    clean_value: float
    corrupted_value: float
    tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    n_prompts: int
    options: dict = field(default_factory=dict)
    token_texts: tuple[str, ...] = ()
    token_ids: tuple[int, ...] = ()

    @property
    def effect(self) -> torch.Tensor:
        """Each component's effect, 0 = none and 1 = full, in this result's direction.

        Denoising: `normalized` itself (how much of the clean answer the patch restores).
        Noising: 1 - `normalized` (how much of it the patch destroys), so a component that leaves
        the clean run alone scores 0 rather than 1.
        """
        return self.normalized if self.direction == "denoising" else 1.0 - self.normalized

    @property
    def points_wrong_way(self) -> bool:
        """The clean run scores worse than the corrupted one on a metric where it should score
        better: the prompts are likely the wrong way round."""
        return self.metric_name in HIGHER_IS_CLEAN and self.clean_value < self.corrupted_value

    @property
    def notes(self) -> tuple[str, ...]:
        """Warnings a reader needs before trusting the map."""
        if not self.points_wrong_way:
            return ()
        return (f"The clean run scores lower than the corrupted one ({self.metric_name} "
                f"{self.clean_value:.4g} against {self.corrupted_value:.4g}, a gap of "
                f"{self.clean_value - self.corrupted_value:.4g}): the corruption points the "
                "wrong way, so effects have the opposite sign and can grow far beyond 1. Swap "
                "the clean and corrupted prompts.",)

    def label(self, index: Sequence[int]) -> str:
        """A reader's name for the component at `index` of `values` ("L3 H2", "L5 pos 7 '␣Paris'")."""
        layer = int(index[0])
        if self.granularity == "layer":
            return f"L{layer}"
        if self.granularity == "layer_pos":
            pos = int(index[1])
            return f"L{layer} pos {pos} '{self.tokens[pos]}'"
        head = int(index[1])
        if self.granularity == "head":
            return f"L{layer} H{head}"
        pos = int(index[2])
        return f"L{layer} H{head} pos {pos} '{self.tokens[pos]}'"

    def top_components(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The k components with the largest |effect|: (label, effect, raw)."""
        flat = self.effect.flatten()
        finite = torch.nonzero(torch.isfinite(flat)).flatten()
        order = finite[torch.argsort(flat[finite].abs(), descending=True, stable=True)][:k]
        shape = self.normalized.shape
        rows = []
        for flat_index in order.tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape))
            rows.append((self.label(index), float(self.effect[index]), float(self.values[index])))
        return rows


# Attribution agrees with exact patching only if the maps correlate at least this well and the
# estimate's size (ratio of the maps' norms) lies in this range: a map 1e-5 the size of the exact
# one can correlate well and still be useless.
AGREEING_PEARSON = 0.6
AGREEING_SCALE = (0.5, 2.0)


@dataclass(frozen=True)
class MethodAgreement:
    """How well attribution patching (approx) matches exact patching on the same components.

    `scale_ratio` is ||approx|| / ||exact|| over the components both maps define (1 = the same
    size); `notes` say why the estimate can't be trusted when it can't.
    """

    pearson: float
    spearman: float
    worst: list[tuple[str, float, float]]  # (label, exact normalized, approx normalized)
    scale_ratio: float = float("nan")
    notes: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        """Whether the estimate can stand in for the exact map: correlated and of its size."""
        low, high = AGREEING_SCALE
        return (math.isfinite(self.pearson) and self.pearson >= AGREEING_PEARSON
                and low <= self.scale_ratio <= high)


def check_site(site: str, granularity: str) -> None:
    """Raise InvalidOptionError unless `site` and `granularity` go together."""
    if site not in SITES:
        raise invalid_choice("patching site", site, SITES)
    if granularity not in GRANULARITIES:
        raise invalid_choice("granularity", granularity, GRANULARITIES)
    valid = RESIDUAL_GRANULARITIES if site in RESIDUAL_SITES else HEAD_GRANULARITIES
    if granularity not in valid:
        raise invalid_choice(f"granularity for site {site!r}", granularity, valid)


def check_heads_exist(heads: Sequence[tuple[int, int]], n_layers: int, n_heads: int,
                      what: str = "Heads") -> None:
    """Raise InvalidOptionError naming the (layer, head) pairs the model doesn't have."""
    outside = [h for h in heads if not (0 <= h[0] < n_layers and 0 <= h[1] < n_heads)]
    if outside:
        raise InvalidOptionError(
            f"{what} {outside} don't exist: layers go from 0 to {n_layers - 1} and heads from 0 "
            f"to {n_heads - 1}.")


def check_direction(direction: str) -> None:
    """Refuse a patching direction other than denoising or noising."""
    if direction not in DIRECTIONS:
        raise invalid_choice("patching direction", direction, DIRECTIONS)


def check_metric_for(metric: PatchingMetric, inputs: PatchingInputs, model) -> None:
    """Refuse a metric that does not fit the inputs (type, prompt count, vocabulary)."""
    if not isinstance(metric, PatchingMetric):
        raise InvalidOptionError(
            "The metric must be a PatchingMetric: use logit_diff_metric, correct_prob_metric or "
            "kl_metric.")
    if len(metric.correct_ids) != inputs.n_prompts:
        raise InvalidOptionError(
            f"The metric has {len(metric.correct_ids)} answer token(s) but there are "
            f"{inputs.n_prompts} prompt(s); give one answer per prompt.")
    d_vocab = model.info.d_vocab
    ids = list(metric.correct_ids) + list(metric.wrong_ids or ())
    bad = [i for i in ids if not 0 <= i < d_vocab]
    if bad:
        raise InvalidOptionError(f"Answer token ids {bad} are outside the vocabulary (0 to {d_vocab - 1}).")
    n_ctx = model.info.n_ctx
    if inputs.n_positions > n_ctx:
        raise InvalidPromptError(
            f"The prompts are {inputs.n_positions} tokens long but {model.info.label} reads at "
            f"most {n_ctx}. Shorten them.")


def check_batch_size(batch_size: int | None) -> None:
    """Refuse a batch size that is not a positive integer or None."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidOptionError(f"batch_size must be a positive whole number or None, not {batch_size!r}.")


def normalize(values: torch.Tensor, clean_value: float, corrupted_value: float) -> torch.Tensor:
    """(values - corrupted) / (clean - corrupted); NaN everywhere when clean equals corrupted."""
    gap = clean_value - corrupted_value
    if gap == 0:
        return torch.full_like(values, float("nan"))
    return (values - corrupted_value) / gap


def metric_from_logits(metric: PatchingMetric, logits: torch.Tensor,
                       clean_log_probs: torch.Tensor | None) -> torch.Tensor:
    """Per-prompt metric [patch, prompt] from last-position logits [patch*prompt, d_vocab]."""
    n_prompts = len(metric.correct_ids)
    logits = logits.view(-1, n_prompts, logits.shape[-1])
    correct = torch.tensor(metric.correct_ids, device=logits.device)
    prompt_index = torch.arange(n_prompts, device=logits.device)
    if metric.name == "logit_diff":
        wrong = torch.tensor(metric.wrong_ids, device=logits.device)
        return logits[:, prompt_index, correct] - logits[:, prompt_index, wrong]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if metric.name == "correct_prob":
        return log_probs[:, prompt_index, correct].exp()
    assert clean_log_probs is not None  # KL to clean: make_scorer passes the clean run's
    clean = clean_log_probs.unsqueeze(0)
    return (clean.exp() * (clean - log_probs)).sum(-1)


