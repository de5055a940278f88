"""The feature browser's data against brute force, and the SAE page's views.

References: a brute-force encode of every buffer row (max, counts, the row of the top
activation), Hugging Face's own unembedding matrix (`lm_head.weight`) for logit effects, and
the prompt's tokens from the model's tokenizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from interp.explain import explain
from interp.export import to_csv
from interp.figures import figure_for
from interp.sae import collect_activations, feature_report, prompt_features, scan_features
from interp.sae.modules import SAEConfig, SparseAutoencoder

TEXTS = ["When Mary and John went to the store, John gave a drink to Mary.",
         "The keys to the cabinet are on the table.", "Paris is the capital of France."] * 4
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    buffer = collect_activations(tiny_model, TEXTS, HOOK, tmp_path_factory.mktemp("buf"),
                                 window=16)
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, hook_name=HOOK, architecture="topk",
                                      k=6))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(32, 64, generator=generator))
        sae.W_dec.copy_(torch.randn(64, 32, generator=generator))
    return buffer, sae.eval()


def test_the_scan_equals_a_brute_force_encode_of_every_row(setup):
    """Reference: encode all rows at once and count, max and argmax by hand."""
    buffer, sae = setup
    codes = sae.encode(torch.from_numpy(np.asarray(buffer.activations()).copy()))
    scan = scan_features(sae, buffer, top_n=3)
    assert torch.allclose(scan.frequency, (codes > 0).float().mean(0))
    assert torch.allclose(scan.max_activation, codes.max(0).values.clamp_min(0))
    # The texts repeat, so the top row may be any of several equal ones: compare values.
    at_top_rows = codes.gather(0, scan.top_rows[:, :1].T)[0]
    assert torch.equal(at_top_rows, codes.max(0).values)
    order = scan.order("max_activation")
    assert scan.max_activation[order[0]] == codes.max()


def test_scanning_in_chunks_gives_the_scan_of_the_whole_buffer_at_once(setup, monkeypatch):
    """Invariant: counts, maxima, means and top activations over chunks of 7 rows equal those
    of one chunk holding the whole buffer, within 1e-6 (float32 matmuls and sums of other row
    counts round differently); tied rows may come in another order, so the rows found must
    hold the values found."""
    from interp.sae import features

    buffer, sae = setup
    monkeypatch.setattr(features, "CHUNK_ROWS", buffer.n_rows)
    whole = scan_features(sae, buffer, top_n=3)
    monkeypatch.setattr(features, "CHUNK_ROWS", 7)
    chunked = scan_features(sae, buffer, top_n=3)
    for name in ("frequency", "max_activation", "mean_active", "top_values"):
        assert torch.allclose(getattr(chunked, name), getattr(whole, name), atol=1e-6, rtol=0)
    codes = sae.encode(torch.from_numpy(np.asarray(buffer.activations()).copy()))
    found = codes.gather(0, chunked.top_rows.T).T
    assert torch.allclose(found, chunked.top_values.clamp_min(0), atol=1e-6, rtol=0)


def test_a_feature_card_shows_its_top_token_and_its_logits_through_the_unembedding(
        setup, tiny_model, tiny_model_dir):
    """References: the brute-force argmax row and its token id from the buffer's windows, and
    HF's `lm_head.weight` times the decoder row for the logit effects."""
    buffer, sae = setup
    codes = sae.encode(torch.from_numpy(np.asarray(buffer.activations()).copy()))
    feature = int(codes.max(0).values.argmax())
    report = feature_report(tiny_model, sae, buffer, feature)
    top_row = int(codes[:, feature].argmax())
    top = report.top_contexts[0]
    assert top.value == pytest.approx(float(codes[top_row, feature]), rel=1e-5)
    token_id = int(buffer.row_tokens()[top_row])
    assert top.tokens[top.focus] == tiny_model.display_tokens([token_id])[0]
    unembedding = GPT2LMHeadModel.from_pretrained(str(tiny_model_dir)).lm_head.weight.detach()
    effects = unembedding @ sae.W_dec[feature].detach()
    assert torch.allclose(report.logit_effects, effects, atol=1e-4)
    best = int(effects.argmax())
    assert report.top_logits[0][0] == tiny_model.display_tokens([best])[0]
    assert sum(report.histogram_counts) == int((codes[:, feature] > 0).sum())
    assert len(report.bands) == 4 and all(contexts for _, contexts in report.bands)
    assert figure_for(report).figure and b"top" in to_csv(report)
    assert f"Feature {feature}" in explain(report).markdown


def test_the_features_on_a_prompt_are_its_tokens_encoded(setup, tiny_model):
    """Reference: the prompt's tokens from the tokenizer; each token's top feature from a
    direct encode of that position's activation."""
    from interp.sae.buffer import activations_at

    _, sae = setup
    prompt = "The keys to the cabinet"
    result = prompt_features(tiny_model, sae, prompt)
    ids = tiny_model.to_tokens(prompt)
    assert result.tokens == tuple(tiny_model.display_tokens(ids[0].tolist()))
    codes = sae.encode(activations_at(tiny_model, HOOK, ids)[0])
    for position, tops in enumerate(result.per_token):
        assert tops[0][0] == int(codes[position].argmax())
    assert result.activations.shape == (len(result.tokens), len(result.features))
