"""Induction as a patching task: repeated random tokens, the heads that copy, and a check on them.

A model that has seen `A B ... A` predicts `B`: an induction head attends from the second `A` to
the token after the first one and copies it, reading keys written by an earlier previous-token
head (Olsson et al. 2022). The task repeats a random token sequence; the corrupted run changes
what the repetition says (its second half shuffled, or new tokens in one half), and the metric
is read at the last position of each sequence, averaged over sequences. The verification view
sets each head's patching effect beside its attention: an induction head both carries the
answer and attends to the token after the current token's first occurrence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.patching import PatchingResult, patch_heads
from interp.patching.path import patch_path_from
from interp.patching_tasks import PatchingTask, shown_ids, task_inputs

INDUCTION_CORRUPTIONS = {
    "shuffle": "the second half is the first half shuffled, so the last token's first "
               "occurrence points at another next token (the wrong answer)",
    "new_second_half": "the second half is other random tokens: nothing repeats",
    "new_first_half": "the first half is other random tokens: the second half is seen for the "
                      "first time (the previous-token heads' keys then point nowhere)",
}
SOURCES = ("vocabulary", "words")
SOURCE_LABELS = {"vocabulary": "random tokens of the model's vocabulary",
                 "words": "a word list"}
DEFAULT_LENGTH = 12
MIN_LENGTH = 4
DEFAULT_SEQUENCES = 8
MAX_SEQUENCES = 64
DEFAULT_WORDS = ("apple river stone cloud window garden silver market doctor teacher "
                 "morning yellow horse island candle forest bridge letter summer castle")
# A head counts as "carrying" the task when patching it restores this share of the metric, and
# as "inducting" when its mean attention to the induction target reaches this value.
EFFECT_THRESHOLD = 0.1
INDUCTION_SCORE_THRESHOLD = 0.3
PREVIOUS_TOKEN_THRESHOLD = 0.4
TOP_HEADS = 6


def longest_length(model) -> int:
    """The longest sequence the model can repeat: [BOS] r r[:-1] has 2 * length tokens."""
    return model.info.n_ctx // 2


def check_length(model, length: int) -> None:
    """Refuse a repeated-sequence length that does not fit the model's context twice."""
    longest = longest_length(model)
    if not isinstance(length, int) or not MIN_LENGTH <= length <= longest:
        raise InvalidOptionError(
            f"The repeated sequence must be from {MIN_LENGTH} to {longest} tokens long for "
            f"{model.info.label} (written twice after BOS it must fit the context of "
            f"{model.info.n_ctx} tokens); got {length!r}.")


def vocabulary_tokens(model) -> list[int]:
    """Every token id a random sequence may use: the tokenizer's, without special tokens."""
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    special |= set(model.to_tokens("", prepend_bos=True)[0].tolist())
    size = min(model.info.d_vocab, len(model.tokenizer))
    return [i for i in range(size) if i not in special]


def word_tokens(model, words: str) -> list[int]:
    """The distinct single-token words of a comma- or space-separated list, as " word" ids."""
    chosen, seen, longer = [], set(), []
    for word in re.split(r"[\s,;]+", words.strip()):
        if not word or word in seen:
            continue
        seen.add(word)
        ids = model.to_tokens(" " + word, prepend_bos=False)[0].tolist()
        if len(ids) == 1:
            chosen.append(ids[0])
        else:
            longer.append(word)
    if longer and not chosen:
        raise InvalidOptionError(
            f"None of the words is a single token for {model.info.label} (e.g. "
            f"{', '.join(longer[:5])}); use shorter, common words.")
    return list(dict.fromkeys(chosen))


def sequence_pool(model, source: str, words: str, length: int) -> list[int]:
    """The token ids a random sequence is drawn from: the vocabulary, or the word list's single-token words."""
    if source not in SOURCES:
        raise invalid_choice("sequence source", source, SOURCES)
    if source == "vocabulary":
        return vocabulary_tokens(model)
    pool = word_tokens(model, words)
    if len(pool) < length:
        raise InvalidOptionError(
            f"The word list has {len(pool)} distinct single-token word(s), but a sequence of "
            f"{length} needs {length} different words (a repeated word would make the next "
            "token ambiguous). Add words or choose a shorter length.")
    return pool


def shuffled_second_half(rng: random.Random, sequence: list[int]) -> tuple[list[int], int]:
    """A shuffle of `sequence` whose last read token r[j] is neither the clean one (r[L-2]) nor
    r[L-1] (which has no successor in the first half), and the answer it points at, r[j + 1]."""
    length = len(sequence)
    while True:
        shuffled = rng.sample(sequence, length)
        j = sequence.index(shuffled[length - 2])
        if j < length - 2:
            return shuffled, sequence[j + 1]


def induction_task(model, length: int = DEFAULT_LENGTH, n_sequences: int = DEFAULT_SEQUENCES,
                   seed: int = 0, corruption: str = "shuffle", source: str = "vocabulary",
                   words: str = DEFAULT_WORDS) -> PatchingTask:
    """Induction on `n_sequences` random sequences r of `length` distinct tokens.

    Clean: [BOS] r r[:-1], answer r[-1] at the last position (only induction can know it).
    Corrupted (`corruption`): "shuffle" (second half r shuffled, wrong answer = the token after
    the corrupted last token's first occurrence), "new_second_half" or "new_first_half" (other
    random tokens; no wrong answer, so the metric is the answer's probability or the KL).
    Tokens come from the whole vocabulary or, with `source="words"`, from `words`.
    """
    check_length(model, length)
    if not isinstance(n_sequences, int) or not 1 <= n_sequences <= MAX_SEQUENCES:
        raise InvalidOptionError(
            f"Use between 1 and {MAX_SEQUENCES} sequences; got {n_sequences!r}.")
    if corruption not in INDUCTION_CORRUPTIONS:
        raise invalid_choice("induction corruption", corruption, tuple(INDUCTION_CORRUPTIONS))
    pool = sequence_pool(model, source, words, length)
    if len(pool) < 2 * length:
        raise InvalidOptionError(
            f"Only {len(pool)} tokens to draw from; the corrupted half needs tokens the clean "
            f"sequence does not use. Give at least {2 * length} words or a shorter length.")
    bos = model.to_tokens("", prepend_bos=True)[0].tolist()[:1]
    rng = random.Random(f"induction|{source}|{seed}")
    clean, corrupted, correct, wrong = [], [], [], []
    for _ in range(n_sequences):
        sequence = rng.sample(pool, length)
        others = [t for t in rng.sample(pool, min(len(pool), 3 * length)) if t not in sequence]
        clean.append(tuple(bos + sequence + sequence[:-1]))
        correct.append(sequence[-1])
        if corruption == "shuffle":
            second, answer = shuffled_second_half(rng, sequence)
            corrupted.append(tuple(bos + sequence + second[:-1]))
            wrong.append(answer)
        elif corruption == "new_second_half":
            corrupted.append(tuple(bos + sequence + others[:length - 1]))
        else:
            corrupted.append(tuple(bos + others[:length] + sequence[:-1]))
    n_tokens = 2 * length
    roles = ("BOS", *(f"1st {i + 1}" for i in range(length)),
             *(f"2nd {i + 1}" for i in range(length - 1)))
    plural = "s" if n_sequences > 1 else ""
    return PatchingTask(
        kind="induction",
        name=f"Induction, {n_sequences} sequence{plural} of {length}, {corruption}",
        description=(
            f"Each prompt is BOS, {length} {SOURCE_LABELS[source]}, then the same tokens again "
            "up to the last one; the model should predict that last token, which only the "
            f"first copy can tell it. Corruption: {INDUCTION_CORRUPTIONS[corruption]}. Values "
            "are read at the last position and averaged over the sequences."),
        model_name=model.name,
        clean_prompts=tuple(shown_ids(model, ids) for ids in clean),
        clean_token_ids=tuple(clean),
        correct_answers=tuple(shown_ids(model, [i]) for i in correct),
        correct_ids=tuple(correct),
        corrupted_prompts=tuple(shown_ids(model, ids) for ids in corrupted),
        corrupted_token_ids=tuple(corrupted),
        wrong_answers=tuple(shown_ids(model, [i]) for i in wrong) if wrong else None,
        wrong_ids=tuple(wrong) if wrong else None,
        key_positions=(("first copy", 1), ("second copy", length + 1), ("end", n_tokens - 1)),
        position_roles=roles)


def sequence_length(task: PatchingTask) -> int:
    """The length of an induction task's repeated sequence (refuses other tasks)."""
    if task.kind != "induction":
        raise InvalidOptionError(f"This needs an induction task, not a {task.kind} task.")
    return task.n_tokens // 2


@dataclass(frozen=True)
class HeadCheck:
    """One head: its patching effect, and its attention on the task's clean sequences."""

    label: str
    layer: int
    head: int
    effect: float
    induction_score: float
    previous_token_score: float
    verdict: str


@dataclass(frozen=True)
class InductionCheck:
    """Patching effect beside attention, on the task's own clean sequences.

    `induction_scores` / `previous_token_scores` [layer, head]: mean attention from each
    second-half position to the token after the current token's first occurrence / to the
    previous position. `target_attention` [layer, head, position]: the induction attention at
    each second-half query position (averaged over sequences). `effects` [layer, head]: the
    normalized head (z) patching effect. `heads`: the TOP_HEADS heads by effect, plus any head
    with a high induction score, each with a verdict; `called_out` those whose effect and
    attention disagree.
    """

    model_name: str
    task_name: str
    direction: str
    induction_scores: torch.Tensor
    previous_token_scores: torch.Tensor
    target_attention: torch.Tensor
    effects: torch.Tensor
    query_labels: tuple[str, ...]
    heads: tuple[HeadCheck, ...]
    previous_token_heads: tuple[tuple[int, int], ...]
    effect_threshold: float = EFFECT_THRESHOLD
    score_threshold: float = INDUCTION_SCORE_THRESHOLD

    @property
    def called_out(self) -> tuple[HeadCheck, ...]:
        return tuple(h for h in self.heads if h.verdict != "induction head"
                     and h.verdict != "neither")

    @property
    def induction_heads(self) -> tuple[tuple[int, int], ...]:
        return tuple((h.layer, h.head) for h in self.heads if h.verdict == "induction head")


def attention_scores(model, task: PatchingTask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Induction scores, previous-token scores [layer, head] and the induction attention per
    second-half query [layer, head, query], on the task's clean sequences."""
    # Imported here: interp.attention imports the exporters, which import the patching sweeps
    # that build on this module.
    from interp.attention import recorded_patterns

    length = sequence_length(task)
    tokens = torch.tensor(task.clean_token_ids, dtype=torch.long)
    patterns, _ = recorded_patterns(model, tokens)
    patterns = patterns.float().cpu().mean(0)  # [layer, head, q, k], averaged over sequences
    queries = torch.arange(length + 1, 2 * length)  # second-half tokens that have a successor
    target = patterns[..., queries, queries - length + 1]
    previous = torch.arange(2, 2 * length)
    return target.mean(-1), patterns[..., previous, previous - 1].mean(-1), target


def verdict(effect: float, score: float) -> str:
    """A head's verdict from its patching effect and induction score against the thresholds."""
    carries, attends = abs(effect) >= EFFECT_THRESHOLD, score >= INDUCTION_SCORE_THRESHOLD
    if carries and attends:
        return "induction head"
    if carries:
        return "patching effect without induction attention"
    if attends:
        return "induction attention without patching effect"
    return "neither"


def previous_token_heads(previous_scores: torch.Tensor, below_layer: int,
                         threshold: float = PREVIOUS_TOKEN_THRESHOLD) -> tuple[tuple[int, int], ...]:
    """Heads in layers below `below_layer` whose mean attention to the previous position reaches
    `threshold`: the first step of the two-head induction circuit."""
    return tuple((layer, head) for layer in range(min(below_layer, previous_scores.shape[0]))
                 for head in range(previous_scores.shape[1])
                 if previous_scores[layer, head].item() >= threshold)


def check_induction(model, task: PatchingTask, head_effects: PatchingResult | None = None,
                    direction: str = "denoising") -> InductionCheck:
    """Set every head's patching effect beside its induction attention on `task`.

    `head_effects` is a head (z, "head" granularity) patching result of `task`; without it the
    sweep is run here. Previous-token heads are looked for below the earliest induction head.
    """
    if head_effects is None:
        inputs, metric = task_inputs(model, task, "logit_diff" if task.has_wrong_answer
                                     else "correct_prob")
        head_effects = patch_heads(model, inputs, metric, direction=direction)
    elif head_effects.site != "z" or head_effects.granularity != "head":
        raise InvalidOptionError("The induction check needs the attention heads (z) sweep.")
    induction, previous, target = attention_scores(model, task)
    effects = head_effects.normalized.float().cpu()
    n_layers, n_heads = effects.shape
    by_effect = sorted(((layer, head) for layer in range(n_layers) for head in range(n_heads)),
                       key=lambda hd: -abs(effects[hd].item()))
    shown = list(by_effect[:TOP_HEADS])
    shown += [hd for hd in by_effect[TOP_HEADS:]
              if induction[hd].item() >= INDUCTION_SCORE_THRESHOLD]
    heads = tuple(HeadCheck(label=f"L{layer}H{head}", layer=layer, head=head,
                            effect=float(effects[layer, head]),
                            induction_score=float(induction[layer, head]),
                            previous_token_score=float(previous[layer, head]),
                            verdict=verdict(float(effects[layer, head]),
                                            float(induction[layer, head])))
                  for layer, head in shown)
    found = [(h.layer, h.head) for h in heads if h.verdict == "induction head"]
    first_layer = min((layer for layer, _ in found), default=n_layers)
    length = sequence_length(task)
    return InductionCheck(
        model_name=model.name, task_name=task.name, direction=head_effects.direction,
        induction_scores=induction, previous_token_scores=previous, target_attention=target,
        effects=effects, query_labels=tuple(f"2nd {i + 1}" for i in range(length - 1)),
        heads=heads, previous_token_heads=previous_token_heads(previous, first_layer))


@dataclass(frozen=True)
class CircuitPath:
    """Path patching from a set of sender heads into receiver heads' keys (noising): the share
    of the clean-minus-corrupted metric lost when only the receivers' keys see the senders'
    corrupted outputs, for the chosen senders and for every disjoint set of as many heads."""

    senders: tuple[tuple[int, int], ...]
    receivers: tuple[tuple[int, int], ...]
    share: float
    control_shares: dict[tuple[tuple[int, int], ...], float]

    @property
    def best_control(self) -> tuple[tuple[tuple[int, int], ...], float] | None:
        if not self.control_shares:
            return None
        best = max(self.control_shares, key=lambda senders: self.control_shares[senders])
        return best, self.control_shares[best]


def key_path_share(model, task: PatchingTask, senders: Sequence[tuple[int, int]],
                   receivers: Sequence[tuple[int, int]], metric: str = "correct_prob") -> float:
    """Share of the metric lost when the receivers' keys see the senders' corrupted outputs."""
    inputs, chosen = task_inputs(model, task, metric)
    patched = patch_path_from(model, inputs, chosen, senders, receivers, receiver_input="k",
                              direction="noising")
    return patched.share_lost


def induction_path(model, task: PatchingTask, senders: Sequence[tuple[int, int]],
                   receivers: Sequence[tuple[int, int]], metric: str = "correct_prob",
                   max_controls: int = 200, seed: int = 0) -> CircuitPath:
    """Path patching from `senders` to `receivers`' keys against disjoint sender sets.

    Controls are every set of len(senders) heads, disjoint from senders and receivers, in
    layers below the last receiver (a seeded sample of `max_controls` when there are more).
    The corruption should change the first half (`new_first_half`), where the keys are read.
    """
    from itertools import combinations

    senders = tuple(sorted(set(senders)))
    receivers = tuple(sorted(set(receivers)))
    if not senders or not receivers:
        raise InvalidOptionError("Give at least one sender and one receiver head.")
    last = max(layer for layer, _ in receivers)
    candidates = [(layer, head) for layer in range(last) for head in range(model.info.n_heads)
                  if (layer, head) not in senders and (layer, head) not in receivers]
    picks = list(combinations(candidates, len(senders)))
    if len(picks) > max_controls:
        picks = random.Random(seed).sample(picks, max_controls)
    return CircuitPath(
        senders=senders, receivers=receivers,
        share=key_path_share(model, task, senders, receivers, metric),
        control_shares={pick: key_path_share(model, task, pick, receivers, metric)
                        for pick in picks})
