"""What an ablated edge carries instead of its sender's live output: resample, mean or zero.

Resample ablation gives each pair its corrupted twin's sender outputs (Chan et al. 2022; in the
MIB benchmark and TransformerLens this is "corrupt" ablation); mean ablation the outputs'
mean at each position over a reference set of prompts (by default the task's clean and
corrupted prompts; TransformerLens' and MIB's definition), or with `mean_scope="pooled"` the
mean over the reference prompts and every position after the start token (the patching
package's head means, and the demo model card's); zero ablation zeros. Position 0 is the start token in every prompt, so its
outputs are the same everywhere: zero ablation leaves it live instead of removing the attention
sink every head relies on.
"""

from __future__ import annotations

import torch

from interp.circuits.data import CircuitData
from interp.circuits.engine import Gpt2Weights, forward
from interp.errors import InvalidOptionError, invalid_choice
from interp.patching.ablation import ABLATION_KINDS

MEAN_SCOPES = ("position", "pooled")


@torch.no_grad()
def sender_outputs(weights: Gpt2Weights, tokens: torch.Tensor,
                   kept_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(every sender's output [rows, pos, sender, d_model], last-position logits) of plain
    passes; the outputs of the first `kept_rows` rows only, when given."""
    out = forward(weights, weights.wte[tokens.to(weights.wte.device)], kept_senders=kept_rows)
    assert out.sender_outputs is not None  # a plain pass keeps every row's
    return out.sender_outputs, out.last_logits


def replacement_outputs(weights: Gpt2Weights, data: CircuitData, kind: str,
                        reference_tokens: torch.Tensor | None = None,
                        clean_outputs: torch.Tensor | None = None,
                        mean_scope: str = "position") -> torch.Tensor:
    """Each pair's replacement sender outputs [pair or 1, pos, sender, d_model] under `kind`."""
    if kind not in ABLATION_KINDS:
        raise invalid_choice("ablation", kind, ABLATION_KINDS)
    if mean_scope not in MEAN_SCOPES:
        raise invalid_choice("mean scope", mean_scope, MEAN_SCOPES)
    if kind == "resample":
        return sender_outputs(weights, data.corrupted_tokens)[0]
    if kind == "mean":
        reference = (torch.cat([data.clean_tokens, data.corrupted_tokens])
                     if reference_tokens is None else reference_tokens)
        if reference.ndim != 2 or reference.shape[1] != data.n_pos or reference.shape[0] == 0:
            raise InvalidOptionError(
                f"Mean ablation needs reference prompts of the task's length ({data.n_pos} "
                f"tokens, start token included); got shape {tuple(reference.shape)}.")
        outputs = sender_outputs(weights, reference)[0]
        if mean_scope == "position":
            return outputs.mean(0, keepdim=True)
        pooled = outputs[:, 1:].mean((0, 1), keepdim=True).expand(1, data.n_pos, -1, -1).clone()
        pooled[:, 0] = outputs[:1, 0]  # the start token: the same in every prompt
        return pooled
    if clean_outputs is None:
        clean_outputs = sender_outputs(weights, data.clean_tokens[:1])[0]
    zeros = torch.zeros_like(clean_outputs[:1])
    zeros[:, 0] = clean_outputs[:1, 0]
    return zeros
