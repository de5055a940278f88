"""Collecting activations: the plain GPT-2 route against the model's own hooks, batches of
similar length, and a cancelled collection keeping the windows it finished, in corpus order.

References: the bridge's hook values (`activations_at`, one forward pass per window with the
hook attached) and Hugging Face's `output_hidden_states`, computed window by window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from interp.patching import gpt2_block
from interp.sae import SITES, collect_activations, hook_name
from interp.sae.buffer import activation_reader, activations_at, length_batches, token_windows

TEXTS = ["When Mary and John went to the store, John gave a drink to Mary.",
         "Hi.", "The keys to the cabinet are on the table by the door.", "Paris is big.",
         "A much longer sentence about the weather, the river, the town and the hills."] * 2


@pytest.mark.parametrize("site", list(SITES))
def test_the_plain_route_equals_the_hook_at_every_site_and_layer(tiny_model, site):
    """Reference: the bridge's own hook value at the same site and layer."""
    windows, lengths = token_windows(tiny_model, TEXTS, 16, 10**9)
    ids = torch.from_numpy(windows[:4, :int(lengths[:4].max())]).long()
    for layer in range(tiny_model.info.n_layers):
        hook = hook_name(site, layer, tiny_model.info.n_layers)
        read = activation_reader(tiny_model, hook, windows[:2, :8])
        assert read.__name__ == "plain"
        expected = activations_at(tiny_model, hook, ids)
        assert torch.allclose(read(ids), expected, atol=1e-5, rtol=0), (site, layer)


def test_a_plain_route_that_disagrees_with_the_hook_is_not_used(tiny_model, monkeypatch):
    """The probe catches a plain computation that is off (here: shifted by 1e-2)."""
    real = gpt2_block.site_activation
    monkeypatch.setattr(gpt2_block, "site_activation",
                        lambda *args: real(*args) + 1e-2)
    windows, _ = token_windows(tiny_model, TEXTS, 16, 10**9)
    read = activation_reader(tiny_model, "blocks.1.hook_resid_mid", windows[:2, :8])
    assert read.__name__ == "hooked"


def test_length_batches_cover_every_window_once_within_the_token_budget():
    lengths = np.array([3, 12, 5, 12, 2, 7, 7, 9, 4, 11])
    batches = length_batches(lengths, 24)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or lengths[batch].max() * len(batch) <= 24
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    in_order = sum(int(lengths[i:i + 2].max()) * 2 for i in range(0, 10, 2))
    assert padded < in_order  # sorting by length pads less than batching in corpus order


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return GPT2LMHeadModel.from_pretrained(str(tiny_model_dir)).eval()


def hidden_states(hf_model, windows, lengths, index, layer=1):
    ids = torch.tensor(windows[index, :lengths[index]][None]).long()
    with torch.no_grad():
        return hf_model(ids, output_hidden_states=True).hidden_states[layer][0, 1:].numpy()


def test_a_cancelled_collection_keeps_the_windows_it_finished_in_corpus_order(
        tiny_model, hf_model, tmp_path):
    """Batches run longest first, so after two batches the finished windows are scattered over
    the corpus: the buffer holds exactly theirs, in corpus order, with their tokens."""
    windows, lengths = token_windows(tiny_model, TEXTS, 16, 10**9)
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 2

    buffer = collect_activations(tiny_model, TEXTS, "blocks.1.hook_resid_pre", tmp_path / "b",
                                 window=16, batch_tokens=32, cancelled=cancelled)
    finished = np.sort(np.concatenate(length_batches(lengths, 32)[:2]))
    assert 0 < len(finished) < len(lengths) and np.any(np.diff(finished) > 1)
    expected = np.concatenate([hidden_states(hf_model, windows, lengths, i) for i in finished])
    assert buffer.n_windows == len(finished) and buffer.n_rows == len(expected)
    assert np.abs(np.asarray(buffer.activations()) - expected).max() < 1e-5
    assert np.array_equal(buffer.tokens(), windows[finished])
    assert (buffer.folder / "activations.f32").stat().st_size == expected.size * 4
