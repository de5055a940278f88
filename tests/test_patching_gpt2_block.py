"""The staircase engine's plain GPT-2 block equals Hugging Face's GPT-2 on the same weights.

Reference: transformers' own GPT2Model run on the tiny model: `output_hidden_states` gives every
block's output (block l's is hidden_states[l + 1], except the last, which Hugging Face returns
after ln_f, so the last block is run as the Hugging Face module itself), and its cache
(`use_cache=True` on the first tokens) gives the keys and values of earlier positions.
"""

from __future__ import annotations

import pytest
import torch

from interp.patching import gpt2_block
from interp.patching.gpt2_block import plain_gpt2_blocks

TOLERANCE = 1e-5
PROMPT = "When Mary and John went to the store, John gave a drink to"


class EarlierPositions:
    """The engine's cache interface over Hugging Face's keys and values of earlier positions."""

    def __init__(self, past):
        self.past = past

    def update(self, keys, values, layer):
        layer_cache = self.past.layers[layer]
        return (torch.cat([layer_cache.keys, keys], dim=2),
                torch.cat([layer_cache.values, values], dim=2))


@pytest.fixture(scope="module")
def hf_run(tiny_model):
    hf = tiny_model.bridge.original_model
    tokens = tiny_model.to_tokens(PROMPT)
    with torch.no_grad():
        states = hf.transformer(tokens, output_hidden_states=True).hidden_states
    return hf, tokens, states


def test_every_block_equals_hugging_face_block_outputs(tiny_model, hf_run):
    hf, tokens, states = hf_run
    blocks = plain_gpt2_blocks(tiny_model)
    assert blocks is not None and len(blocks) == hf.config.n_layer
    with torch.no_grad():
        for layer, weights in enumerate(blocks):
            ours = gpt2_block.block(weights, states[layer].clone(), None, layer)
            if layer < len(blocks) - 1:
                expected = states[layer + 1]
            else:
                expected = hf.transformer.h[layer](states[layer])[0]
            assert (ours - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize("first", [1, 5, 9])
def test_later_positions_with_earlier_keys_and_values_from_hugging_faces_cache(tiny_model, hf_run,
                                                                               first):
    hf, tokens, states = hf_run
    with torch.no_grad():
        past = hf.transformer(tokens[:, :first], use_cache=True).past_key_values
    cache = EarlierPositions(past)
    blocks = plain_gpt2_blocks(tiny_model)
    with torch.no_grad():
        for layer in range(len(blocks) - 1):
            ours = gpt2_block.block(blocks[layer], states[layer][:, first:].clone(), cache, layer)
            assert (ours - states[layer + 1][:, first:]).abs().max() <= TOLERANCE
            last = gpt2_block.block(blocks[layer], states[layer][:, first:].clone(), cache, layer,
                                    last_position_only=True)
            assert last.shape[1] == 1
            assert (last - states[layer + 1][:, -1:]).abs().max() <= TOLERANCE


def test_models_it_does_not_match_use_the_bridge(tiny_model, monkeypatch):
    config = tiny_model.bridge.original_model.config
    monkeypatch.setattr(config, "reorder_and_upcast_attn", True)
    assert plain_gpt2_blocks(tiny_model) is None
    monkeypatch.setattr(config, "reorder_and_upcast_attn", False)
    monkeypatch.setattr(config, "activation_function", "relu")
    assert plain_gpt2_blocks(tiny_model) is None


def test_the_cached_forward_pass_equals_the_bridges_hooks_at_every_hook(tiny_model):
    """Reference: the bridge's own forward pass with a caching hook on every name
    (`cached_run` without `plain`), and its logits at the last position."""
    from interp.patching.runs import cached_run

    tokens = tiny_model.to_tokens([PROMPT, "The keys to the cabinet are on the table by the"])
    n_layers = tiny_model.info.n_layers
    names = [f"blocks.{layer}.{hook}" for layer in range(n_layers)
             for hook in gpt2_block.CACHED_HOOKS]
    assert gpt2_block.can_cache(names, n_layers)
    assert not gpt2_block.can_cache(["blocks.0.ln1.hook_scale"], n_layers)
    expected_logits, expected = cached_run(tiny_model, tokens, names)
    logits, cache = cached_run(tiny_model, tokens, names, plain=True)
    assert (logits - expected_logits).abs().max() <= TOLERANCE
    for name in names:
        assert cache[name].shape == expected[name].shape, name
        assert (cache[name] - expected[name]).abs().max() <= TOLERANCE, name
