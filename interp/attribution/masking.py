"""Black-box evaluation of an attribution target on edited copies of a prompt.

SHAP, occlusion and the faithfulness curves all ask one question many times: what is the target
(a token's logit or log-probability, a contrast, a continuation) when some input tokens are
replaced or removed? `TargetEvaluator` answers it for a batch of edited token rows at once, with
a leading BOS token held fixed (it is the model's start marker, not a word of the prompt).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from interp.attribution.targets import AttributionTarget, logits_from, target_scalar
from interp.errors import InvalidOptionError, invalid_choice

OUTPUTS = ("logit", "log_prob")
DEFAULT_BATCH_SIZE = 64


def mask_token_id(model, replacement: str | int | None = None) -> int:
    """The token that stands in for a masked one: an id, a text of exactly one token, or (None)
    the model's end-of-text token, which GPT-2 reads as "no text here"."""
    if replacement is None:
        tokenizer = model.tokenizer
        found = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        if found is None:
            raise InvalidOptionError("This model's tokenizer has no end-of-text token; choose a "
                                     "replacement token for masking.")
        return int(found)
    if isinstance(replacement, int):
        if not 0 <= replacement < model.info.d_vocab:
            raise InvalidOptionError(f"Replacement token id {replacement} is outside the "
                                     f"vocabulary (0 to {model.info.d_vocab - 1}).")
        return replacement
    ids = model.token_ids(replacement)
    if len(ids) != 1:
        raise InvalidOptionError(f"The replacement {replacement!r} is {len(ids)} tokens; choose a "
                                 "text that is exactly one token (e.g. ' the' or '.').")
    return ids[0]


def feature_positions(model, token_ids: Sequence[int]) -> list[int]:
    """Positions a black-box method may edit: all but a leading BOS token."""
    bos = model.tokenizer.bos_token_id
    start = 1 if len(token_ids) > 1 and bos is not None and int(token_ids[0]) == bos else 0
    return list(range(start, len(token_ids)))


def chunks(rows: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """`rows` in consecutive slices of at most `size` rows."""
    for start in range(0, rows.shape[0], size):
        yield rows[start:start + size]


@dataclass(frozen=True)
class TargetEvaluator:
    """The target's value on token rows [batch, n], `batch_size` rows per forward pass.

    Call it with the bridge of an open `model.exclusive()` (or `hooked()`) block: it runs plain
    forward passes and adds no hooks. A continuation target appends its generated tokens to each
    row (teacher forcing) and returns one value per generated token: [batch, n_generated];
    other targets return [batch].
    """

    target: AttributionTarget
    output: str = "logit"
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise invalid_choice("output", self.output, OUTPUTS)
        if self.batch_size < 1:
            raise InvalidOptionError(f"batch_size must be at least 1, not {self.batch_size}.")

    @property
    def n_outputs(self) -> int:
        return len(self.target.continuation_ids) if self.target.kind == "continuation" else 1

    def values_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Target values from logits [batch, n_outputs, vocab] of the positions that predict
        the target (the prompt's last, then each fed continuation token)."""
        if self.output == "log_prob":
            logits = logits.log_softmax(-1)
        if self.target.kind != "continuation":
            return target_scalar(logits[:, 0], self.target)
        steps = torch.arange(self.n_outputs, device=logits.device)
        wanted = torch.tensor(self.target.continuation_ids, device=logits.device)
        return logits[:, steps, wanted]

    @torch.no_grad()
    def __call__(self, bridge, rows: torch.Tensor) -> torch.Tensor:
        # Callers build token rows and results on the CPU (results go to pages there); the rows
        # go to the model's device here, chunk by chunk, and come back as CPU values.
        rows = torch.as_tensor(rows, dtype=torch.long)
        n_prompt = rows.shape[1]
        device = next(bridge.parameters()).device
        if self.target.kind == "continuation":
            # The last generated token is only read, never fed: its logit sits one step earlier.
            tail = torch.tensor(self.target.continuation_ids[:-1], dtype=torch.long)
            rows = torch.cat([rows, tail.expand(rows.shape[0], -1)], dim=1)
        values = [self.values_from_logits(logits_from(bridge, chunk.to(device), n_prompt - 1))
                  .float().cpu() for chunk in chunks(rows, self.batch_size)]
        return torch.cat(values)


def masked_rows(token_ids: Sequence[int], masks: torch.Tensor, positions: Sequence[int],
                replacement_id: int) -> torch.Tensor:
    """Token rows [batch, n]: `token_ids` with the editable `positions` whose mask entry is 0
    replaced by `replacement_id` (masks: [batch, len(positions)], 1 = keep)."""
    masks = torch.as_tensor(masks).bool()
    rows = torch.tensor(list(token_ids), dtype=torch.long).repeat(masks.shape[0], 1)
    index = torch.tensor(list(positions), dtype=torch.long)
    edited = rows[:, index]
    rows[:, index] = torch.where(masks, edited, torch.full_like(edited, replacement_id))
    return rows
