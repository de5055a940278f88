"""Occlusion and perturbation analysis: edit one input token, re-run the model, see what changes.

Black-box and usable on any model. Occlusion scores a token by how much the target drops when
the token is deleted (leave-one-out), replaced by a chosen token, or replaced by its nearest
neighbours in the embedding space (averaged): score = f(prompt) - f(edited prompt). The
perturbation analysis shows, for each such edit, the edited prompt and what the model now
generates (greedy, a few tokens), so a reader sees an edit's effect as text, not only a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp.attribution.masking import (
    DEFAULT_BATCH_SIZE,
    TargetEvaluator,
    feature_positions,
    mask_token_id,
)
from interp.attribution.results import AttributionResult, ProgressCallback, register_method
from interp.attribution.targets import AttributionTarget, resolve_target
from interp.errors import InvalidOptionError, invalid_choice

OCCLUSION_MODES = ("leave_one_out", "substitute", "neighbours")
MODE_LABELS = {"leave_one_out": "delete the token", "substitute": "replace it by one token",
               "neighbours": "replace it by its nearest neighbours in embedding space"}
DEFAULT_NEIGHBOURS = 3
DEFAULT_NEW_TOKENS = 4


@dataclass(frozen=True)
class Edit:
    """One edited prompt: `position`'s token replaced by `new_id`, or deleted (new_id None)."""

    position: int
    new_id: int | None

    def apply(self, token_ids: Sequence[int]) -> list[int]:
        edited = list(token_ids)
        if self.new_id is None:
            del edited[self.position]
        else:
            edited[self.position] = self.new_id
        return edited


def nearest_neighbours(model, token_id: int, k: int) -> list[int]:
    """The k tokens whose input embeddings are closest to `token_id`'s (cosine), itself excluded."""
    embeddings = model.bridge.original_model.get_input_embeddings().weight.detach()
    similarity = torch.nn.functional.cosine_similarity(embeddings, embeddings[token_id][None], dim=-1)
    similarity[token_id] = -float("inf")
    return similarity.topk(k).indices.tolist()


def edits_for(model, token_ids: Sequence[int], mode: str, replacement: str | int | None,
              n_neighbours: int) -> list[Edit]:
    """The edits of one occlusion mode, in position order (n_neighbours per position for
    "neighbours", one otherwise)."""
    if mode not in OCCLUSION_MODES:
        raise invalid_choice("occlusion mode", mode, OCCLUSION_MODES)
    positions = feature_positions(model, token_ids)
    if mode == "leave_one_out":
        if len(token_ids) < 2:
            raise InvalidOptionError("Leave-one-out needs a prompt of at least two tokens.")
        return [Edit(p, None) for p in positions]
    if mode == "substitute":
        new_id = mask_token_id(model, replacement)
        return [Edit(p, new_id) for p in positions]
    if n_neighbours < 1:
        raise InvalidOptionError(f"n_neighbours must be at least 1, not {n_neighbours}.")
    return [Edit(p, n) for p in positions
            for n in nearest_neighbours(model, int(token_ids[p]), n_neighbours)]


def edited_values(model, token_ids: Sequence[int], edits: Sequence[Edit],
                  evaluate: TargetEvaluator) -> tuple[torch.Tensor, torch.Tensor]:
    """The target on the prompt and on each edited prompt ([n_edits] or [n_edits, n_generated])."""
    # CPU rows on purpose: `evaluate` moves them to the weights' device chunk by chunk and
    # returns CPU values, which the scores below (CPU tensors) are built from.
    with model.exclusive() as bridge:
        full = evaluate(bridge, torch.tensor([list(token_ids)]))[0]
        rows = torch.tensor([edit.apply(token_ids) for edit in edits], dtype=torch.long)
        return full, evaluate(bridge, rows)


@register_method("occlusion", "Occlusion: the target's drop when one token is deleted or "
                 "replaced (by a chosen token or its embedding neighbours)", False)
def occlusion(model, token_ids: Sequence[int], target: AttributionTarget | None, *,
              progress: ProgressCallback | None = None, mode: str = "leave_one_out",
              replacement: str | int | None = None, n_neighbours: int = DEFAULT_NEIGHBOURS,
              output: str = "logit", batch_size: int = DEFAULT_BATCH_SIZE) -> AttributionResult:
    """Occlusion scores: f(prompt) - f(prompt with the token edited), per input token (mean over
    the neighbours in "neighbours" mode); a leading BOS token is never edited and scores 0."""
    token_ids = tuple(int(t) for t in token_ids)
    target = resolve_target(model, token_ids, target)
    edits = edits_for(model, token_ids, mode, replacement, n_neighbours)
    if progress is not None:
        progress(0, len(edits))
    full, values = edited_values(model, token_ids, edits, TargetEvaluator(target, output, batch_size))
    drops = full[None] - values  # [n_edits] or [n_edits, n_generated]
    scores = torch.zeros((len(token_ids), *full.shape))
    counts = torch.zeros(len(token_ids))
    for edit, drop in zip(edits, drops, strict=True):
        scores[edit.position] += drop
        counts[edit.position] += 1
    scores = (scores / counts.clamp(min=1).view(-1, *([1] * full.dim()))).movedim(0, -1)
    if progress is not None:
        progress(len(edits), len(edits))
    notes = [f"Each token's score is how much the target falls when we {MODE_LABELS[mode]}."]
    if mode == "leave_one_out":
        notes.append("Deleting a token also shifts every later token one position left.")
    return AttributionResult(
        method="occlusion", model_name=model.name, tokens=tuple(model.display_tokens(token_ids)),
        token_ids=token_ids, scores=scores.contiguous(), target=target,
        target_value=float(full.sum()), baseline_value=None,
        extras={"mode": mode, "output": output, "n_edits": len(edits),
                "edits": [(e.position, e.new_id) for e in edits],
                "edited_values": values.tolist()},
        notes=tuple(notes),
        options={"mode": mode, "replacement": replacement, "n_neighbours": n_neighbours,
                 "output": output, "batch_size": batch_size})


@torch.no_grad()
def greedy_continuations(model, rows: torch.Tensor, n_new: int) -> torch.Tensor:
    """The `n_new` greedy next tokens of each row [batch, n] (rows of one length, no padding)."""
    with model.exclusive() as bridge:
        device = next(bridge.parameters()).device
        current = rows.to(device)
        for _ in range(n_new):
            next_ids = bridge(current)[:, -1].argmax(-1, keepdim=True)
            current = torch.cat([current, next_ids], dim=1)
    return current[:, rows.shape[1]:].cpu()


@dataclass(frozen=True)
class PerturbedPrompt:
    """One edit of the prompt, the target's value there, and what the model now generates."""

    position: int
    token: str
    replacement: str  # the new token, or "(deleted)"
    prompt: str
    target_value: float
    change: float  # target_value - the unedited prompt's value
    continuation: str
    continuation_changed: bool


@dataclass(frozen=True)
class PerturbationAnalysis:
    """Every edit of one occlusion mode with the greedy continuation it leads to.

    `original_continuation` is the unedited prompt's greedy continuation (`n_new_tokens` tokens);
    `rows` are in position order. The target is the first generated token of a continuation
    target, else the target itself.
    """

    model_name: str
    prompt: str
    tokens: tuple[str, ...]
    mode: str
    target: AttributionTarget
    target_value: float
    original_continuation: str
    n_new_tokens: int
    rows: tuple[PerturbedPrompt, ...]


def perturbation_analysis(model, prompt: str, target: AttributionTarget | None = None,
                          mode: str = "substitute", replacement: str | int | None = None,
                          n_neighbours: int = 1, n_new_tokens: int = DEFAULT_NEW_TOKENS,
                          progress: ProgressCallback | None = None) -> PerturbationAnalysis:
    """Edit each token in turn (as occlusion `mode` does) and generate `n_new_tokens` greedy
    tokens from every edited prompt."""
    if n_new_tokens < 1:
        raise InvalidOptionError(f"n_new_tokens must be at least 1, not {n_new_tokens}.")
    token_ids = tuple(int(t) for t in model.to_tokens(prompt)[0])
    target = resolve_target(model, token_ids, target)
    if target.is_continuation:  # one number per edit: the first generated token's
        target = target.step(0)
    edits = edits_for(model, token_ids, mode, replacement, n_neighbours)
    if progress is not None:
        progress(0, len(edits) + 1)
    full, values = edited_values(model, token_ids, edits, TargetEvaluator(target))
    original = greedy_continuations(model, torch.tensor([token_ids]), n_new_tokens)[0]
    by_length: dict[int, list[int]] = {}
    edited = [edit.apply(token_ids) for edit in edits]
    for index, row in enumerate(edited):
        by_length.setdefault(len(row), []).append(index)
    continuations: list[list[int]] = [[] for _ in edits]
    for indices in by_length.values():
        generated = greedy_continuations(model, torch.tensor([edited[i] for i in indices]),
                                         n_new_tokens)
        for i, ids in zip(indices, generated.tolist(), strict=True):
            continuations[i] = ids
    if progress is not None:
        progress(len(edits) + 1, len(edits) + 1)
    tokens = model.display_tokens(token_ids)
    start = 1 if feature_positions(model, token_ids)[:1] == [1] else 0
    rows = tuple(PerturbedPrompt(
        position=edit.position, token=tokens[edit.position],
        replacement="(deleted)" if edit.new_id is None else model.display_tokens([edit.new_id])[0],
        prompt=model.decode(row[start:]), target_value=float(value),
        change=float(value - full), continuation=model.decode(ids),
        continuation_changed=ids != original.tolist())
        for edit, row, value, ids in zip(edits, edited, values, continuations, strict=True))
    return PerturbationAnalysis(
        model_name=model.name, prompt=prompt, tokens=tuple(tokens), mode=mode, target=target,
        target_value=float(full), original_continuation=model.decode(original.tolist()),
        n_new_tokens=n_new_tokens, rows=rows)
