"""Activation collection and SAE metrics against independent computations.

References: Hugging Face's own `output_hidden_states` and `labels=` loss on the tiny GPT-2 (a
peer implementation of the forward pass and of cross-entropy), NumPy written out from each
metric's formula, and the invariant that splicing in a perfect reconstruction changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from interp.sae import collect_activations, explained_variance, l0, normalized_mse, splice_losses
from interp.sae.buffer import token_windows

TEXTS = ["When Mary and John went to the store, John gave a drink to Mary.",
         "The keys to the cabinet are on the table.", "Paris is the capital of France."] * 3


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return GPT2LMHeadModel.from_pretrained(str(tiny_model_dir)).eval()


def test_collected_activations_equal_hugging_face_hidden_states(tiny_model, hf_model, tmp_path):
    """Reference: HF `output_hidden_states[1]` (= blocks.1.hook_resid_pre) at every real token
    but BOS, and the token ids at each row equal to the windows' own tokens."""
    buffer = collect_activations(tiny_model, TEXTS, "blocks.1.hook_resid_pre", tmp_path / "b",
                                 window=12, batch_tokens=24)
    windows, lengths = token_windows(tiny_model, TEXTS, 12, 10**9)
    expected, expected_ids = [], []
    with torch.no_grad():
        for ids, n in zip(windows, lengths, strict=True):
            states = hf_model(torch.tensor(ids[None, :n]).long(),
                              output_hidden_states=True).hidden_states[1][0]
            expected.append(states[1:].numpy())
            expected_ids.append(ids[1:n])
    expected = np.concatenate(expected)
    assert buffer.n_rows == len(expected) and buffer.d_in == 32
    assert np.abs(np.asarray(buffer.activations()) - expected).max() < 1e-5
    assert np.array_equal(buffer.row_tokens(), np.concatenate(expected_ids))
    window, position = buffer.locate(int(lengths[0]) - 1)  # first row of the second window
    assert (window, position) == (1, 1)


def test_reconstruction_metrics_equal_their_formulas_by_hand():
    """Reference: each docstring's formula written out in float64 NumPy; and explained variance
    is the summed-variance ratio, not the mean of per-dimension ratios (the two differ here)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * np.array([10, 1, 1, 1, 1, 0.1])
    x_hat = x + rng.normal(size=x.shape) * np.array([1, 1, 0.5, 0.5, 0.5, 0.1]) + 0.3
    codes = np.where(rng.random((500, 20)) < 0.15, rng.random((500, 20)), 0.0)
    tx, th = torch.tensor(x), torch.tensor(x_hat)
    expected_ev = 1 - (x - x_hat).var(0).sum() / x.var(0).sum()
    per_dimension = np.mean(1 - (x - x_hat).var(0) / x.var(0))
    assert abs(explained_variance(tx, th) - expected_ev) < 1e-9
    assert abs(expected_ev - per_dimension) > 0.1
    expected_nmse = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert abs(normalized_mse(tx, th) - expected_nmse) < 1e-9
    assert abs(l0(torch.tensor(codes)) - (codes > 0).sum(1).mean()) < 1e-6


def test_reconstruction_scores_stream_the_buffer_in_chunks(tiny_model, tmp_path):
    """Reference: the three formulas in float64 NumPy over all scored rows at once. The buffer
    is scored in chunks of 7 rows (with a last partial chunk), so the per-dimension sums that
    the chunks accumulate must recombine into the whole-buffer variances exactly."""
    from interp.sae import SAEConfig, SparseAutoencoder
    from interp.sae.metrics import reconstruction_scores

    buffer = collect_activations(tiny_model, TEXTS, "blocks.1.hook_resid_pre", tmp_path / "b",
                                 window=12, batch_tokens=24)
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, hook_name="blocks.1.hook_resid_pre",
                                      architecture="topk", k=5))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    max_rows = buffer.n_rows - 3  # the last rows only, as the metric documents
    sparsity, variance, nmse, n_rows = reconstruction_scores(sae, buffer, max_rows,
                                                             chunk_rows=7)
    x = np.asarray(buffer.activations(), dtype=np.float64)[-max_rows:]
    with torch.no_grad():
        x_hat, codes = sae(torch.tensor(x, dtype=torch.float32))
    x_hat, codes = x_hat.double().numpy(), codes.numpy()
    assert n_rows == max_rows and max_rows % 7 != 0
    assert abs(sparsity - (codes > 0).sum(1).mean()) < 1e-12
    assert abs(variance - (1 - (x - x_hat).var(0).sum() / x.var(0).sum())) < 1e-6
    assert abs(nmse - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()) < 1e-6


def hf_loss(hf_model, ids, zero_layer=None):
    """Mean next-token loss from HF's own `labels=`, with block `zero_layer`'s input zeroed at
    every position but the first when given (what zero-ablating hook_resid_pre means)."""
    handle = None
    if zero_layer is not None:
        def zero(module, args, kwargs):
            hidden = args[0].clone()
            hidden[:, 1:] = 0
            return (hidden, *args[1:]), kwargs
        handle = hf_model.transformer.h[zero_layer].register_forward_pre_hook(zero,
                                                                              with_kwargs=True)
    try:
        with torch.no_grad():
            return float(hf_model(ids, labels=ids).loss)
    finally:
        if handle is not None:
            handle.remove()


def test_splicing_the_identity_leaves_the_loss_unchanged_and_matches_hugging_face(tiny_model,
                                                                                  hf_model):
    """References: HF's `labels=` loss (clean, and with block 1's input zeroed after BOS), and
    the invariant that a perfect reconstruction changes the loss by < 1e-5 with KL ~ 0."""
    ids = tiny_model.to_tokens(TEXTS[0])
    losses = splice_losses(tiny_model, ids, "blocks.1.hook_resid_pre", lambda x: x.clone())
    assert abs(losses.ce_spliced - losses.ce_clean) < 1e-5
    assert abs(losses.kl_to_clean) < 1e-6
    assert abs(losses.ce_clean - hf_loss(hf_model, ids)) < 1e-5
    assert abs(losses.ce_zero - hf_loss(hf_model, ids, zero_layer=1)) < 1e-5
    assert abs(losses.loss_recovered - 1.0) < 1e-4
    halfway = splice_losses(tiny_model, ids, "blocks.1.hook_resid_pre", lambda x: 0.5 * x)
    assert halfway.kl_to_clean > 1e-4 and halfway.ce_spliced != losses.ce_clean
    assert (halfway.ce_zero - halfway.ce_spliced) / (halfway.ce_zero - halfway.ce_clean) == \
        pytest.approx(halfway.loss_recovered)


def test_splicing_in_memory_bounded_batches_gives_the_same_losses(tiny_model, monkeypatch):
    """Invariant: the losses are token sums, so one window per batch (the logit budget forced to
    its minimum) equals all windows in one batch, with windows of different lengths."""
    from interp.sae import metrics

    short, long = (tiny_model.to_tokens(text)[0] for text in (TEXTS[0],
                                                               TEXTS[0] + " and more words here"))
    ids = torch.stack([torch.cat([short, long[len(short):]]), long])  # row 0 counts `short` only
    lengths = torch.tensor([len(short), len(long)])
    def run():
        return splice_losses(tiny_model, ids, "blocks.1.hook_resid_pre", lambda x: 0.5 * x,
                             lengths=lengths, batch_size=16)
    together = run()
    monkeypatch.setattr(metrics, "LOGIT_FLOATS_PER_BATCH", 1)
    assert metrics.splice_batch_size(ids.shape[1], tiny_model.info.d_vocab, 16) == 1
    alone = run()
    assert alone.n_tokens == together.n_tokens == int(lengths.sum()) - 2
    for name in ("ce_clean", "ce_spliced", "ce_zero", "kl_to_clean"):
        # float32 logits summed in another batch shape: a few ulps of a value near 10.
        assert getattr(alone, name) == pytest.approx(getattr(together, name), rel=1e-6,
                                                     abs=1e-6)
