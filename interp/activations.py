"""GPT-2's tanh GELU through torch's fused kernel.

Hugging Face's `NewGELUActivation` (GPT-2's "gelu_new") spells the tanh approximation out in
five elementwise operations; torch's `gelu(approximate="tanh")` computes the same function
(within float32 rounding, ~2e-7) in one kernel. In a forward pass that is ~3x less time in the
activation; in a gradient pass it is far less memory, since autograd keeps each of the five
intermediates of [tokens, d_mlp] for the backward pass where the fused kernel keeps its input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

# Hugging Face's names for the tanh approximation.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


class FusedTanhGELU(torch.nn.Module):
    """GPT-2's tanh-approximated GELU as one fused torch kernel (one saved input for backward)."""
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def uses_tanh_gelu(model) -> bool:
    """Whether the model's Hugging Face config uses a tanh-approximated GELU."""
    config = getattr(getattr(model.bridge, "original_model", None), "config", None)
    return getattr(config, "activation_function", None) in TANH_GELU


@contextlib.contextmanager
def fused_tanh_gelu(model) -> Iterator[None]:
    """Inside: every GPT-2 MLP's activation is the fused kernel; restored on exit. Hold the
    model's lock around it (`hooked()` / `exclusive()`): the modules are shared."""
    swapped = []
    if uses_tanh_gelu(model):
        for block in model.bridge.original_model.transformer.h:
            swapped.append((block.mlp, block.mlp.act))
            block.mlp.act = FusedTanhGELU()
    try:
        yield
    finally:
        for mlp, original in swapped:
            mlp.act = original
