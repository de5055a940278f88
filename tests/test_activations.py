"""The fused tanh GELU: same function as GPT-2's, swapped in only inside its context."""

import torch
from transformers.activations import NewGELUActivation

from interp.activations import FusedTanhGELU, fused_tanh_gelu
from interp.attribution.gradients import GRADIENT_PASS_BYTES, gradient_tokens_per_pass


def test_fused_gelu_equals_hugging_faces_new_gelu():
    """Reference: Hugging Face's NewGELUActivation (GPT-2's gelu_new), values and gradients."""
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64, requires_grad=True)
    ours, theirs = FusedTanhGELU()(x), NewGELUActivation()(x)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-10, rtol=1e-10)


def test_swap_is_undone_and_logits_unchanged(tiny_model):
    """Reference: the model's own logits outside the context (HF's activation)."""
    tokens = tiny_model.to_tokens("The keys to the cabinet are")
    blocks = tiny_model.bridge.original_model.transformer.h
    before = [type(b.mlp.act) for b in blocks]
    plain = tiny_model.logits(tokens)
    with tiny_model.hooked() as bridge, fused_tanh_gelu(tiny_model):
        assert all(isinstance(b.mlp.act, FusedTanhGELU) for b in blocks)
        fused = bridge(tokens)
    assert [type(b.mlp.act) for b in blocks] == before
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)


def test_gradient_pass_fits_its_budget(tiny_model):
    """Hand count for GPT-2 small's shape: 12 x (4 x 3072 + 16 x 768) x 4 bytes per token."""
    from types import SimpleNamespace

    small = SimpleNamespace(info=SimpleNamespace(n_layers=12, d_mlp=3072, d_model=768))
    assert gradient_tokens_per_pass(small) == GRADIENT_PASS_BYTES // (12 * 24576 * 4)
