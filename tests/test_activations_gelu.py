"""The staircase engine's in-place tanh GELU equals torch's fused kernel.

Reference: `torch.nn.functional.gelu(x, approximate="tanh")`, the kernel Hugging Face's GPT-2
"gelu_new" is checked against in `interp.activations`; the sigmoid form is the same function
((1 + tanh u) / 2 = sigmoid 2u), so only float32 rounding may differ.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interp import activations
from interp.activations import tanh_gelu_


@pytest.mark.parametrize("shape", [(3, 7, 3072), (1, 5000), (2, 1, 1)])
def test_matches_the_fused_kernel_in_place_over_uneven_blocks(shape, monkeypatch):
    monkeypatch.setattr(activations, "GELU_CHUNK_FLOATS", 4 * shape[-1] + 1)  # blocks of 4 rows
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 4
    expected = F.gelu(x, approximate="tanh")
    out = tanh_gelu_(x)
    assert out.data_ptr() == x.data_ptr()
    assert (out - expected).abs().max() <= 1e-6
