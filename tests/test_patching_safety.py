"""The patching engine never gives wrong numbers silently: its self-check, its architecture
declarations, and attribution patching's refusal of sites the metric's graph never reaches.

References: plain hooked forward passes written in tests/test_patching_engine.py
(`hooked_sweep`), and the model's own logits for the self-check's tolerance.
"""

from __future__ import annotations

import pytest
import torch

from interp import patching as P
from interp.errors import InvalidOptionError, UnreachableSiteError, UnsupportedArchitectureError
from interp.models import load_model
from interp.patching.architecture import STAIRCASE, check_architecture
from interp.random_models import gpt2_tokenizer
from tests.test_patching_engine import hooked_sweep, ioi_inputs, load_sharp_model


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    return load_sharp_model(tmp_path_factory)


# --- attribution patching: sites cut off from the graph ----------------------------------------


def test_attribution_patching_refuses_a_site_the_metric_never_reaches(sharp_model):
    """A torch hook detaches block 0's attention output, so layer 0's attn_out can't reach the
    metric: its attribution is undefined, and must not come back as a map of zeros."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)

    def detach_output(module, args, output):
        return (output[0].detach(), *output[1:]) if isinstance(output, tuple) else output.detach()
    handle = sharp_model.bridge.blocks[0].attn.register_forward_hook(detach_output)
    try:
        with pytest.raises(UnreachableSiteError, match=r"can't reach blocks\.0\.attn\.hook_out"):
            P.attribution_patch(sharp_model, inputs, metric, site="attn_out")
    finally:
        handle.remove()
    assert sharp_model.active_hook_count() == 0
    P.attribution_patch(sharp_model, inputs, metric, site="attn_out")  # reachable again


# --- the staircase engine's self-check ---------------------------------------------------------


def mlp_before_attention(hf_block):
    """A forward for a Hugging Face GPT-2 block with its MLP run before its attention."""
    def forward(hidden_states, past_key_values=None, attention_mask=None,
                encoder_hidden_states=None, encoder_attention_mask=None, use_cache=False,
                **kwargs):
        hidden_states = hidden_states + hf_block.mlp(hf_block.ln_2(hidden_states))
        attn_output, _ = hf_block.attn(hf_block.ln_1(hidden_states),
                                       past_key_values=past_key_values,
                                       attention_mask=attention_mask, use_cache=use_cache,
                                       **kwargs)
        return hidden_states + attn_output
    return forward


def test_the_self_check_refuses_an_altered_block_and_the_numbers_stay_right(tmp_path_factory,
                                                                           monkeypatch):
    """Reference: one plain hooked forward pass per patch through the altered model."""
    model = load_sharp_model(tmp_path_factory)
    last = model.bridge.blocks[model.info.n_layers - 1].original_component
    monkeypatch.setattr(last, "forward", mlp_before_attention(last))
    inputs, metric, _, _ = ioi_inputs(model)
    result = P.patch(model, inputs, metric, site="resid_pre")
    verdict = P.staircase_verdict(model)
    assert not verdict.trusted
    assert verdict.max_difference > P.self_check.RELATIVE_TOLERANCE * verdict.max_abs_logit
    assert result.options["engine"] == "hooked"
    assert "failed" in result.options["engine_note"]
    expected = hooked_sweep(model, inputs, metric, "resid_pre", "layer_pos")
    assert (expected - result.corrupted_value).abs().max() > 1e-2
    assert torch.allclose(result.values, expected, atol=1e-5)


def test_the_self_check_passes_on_the_unaltered_model_once(sharp_model, monkeypatch):
    verdict = P.staircase_verdict(sharp_model)
    assert verdict.trusted and verdict.max_difference <= 1e-4 * verdict.max_abs_logit
    monkeypatch.setattr(P.self_check, "check_staircase", lambda model: pytest.fail("re-checked"))
    assert P.staircase_verdict(sharp_model) is verdict


@pytest.mark.slow
def test_the_self_check_passes_on_a_gpt2_small_shaped_model_with_gpt2_sized_logits(tmp_path):
    """Real GPT-2's logits reach about -100; a random model's ~3. Scaling the final layer norm
    scales the logits to GPT-2's range, where a tolerance of 1e-4 x max |logit| must hold."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer()
    config = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=1024,
                        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        probe = torch.tensor([[tokenizer.bos_token_id, 464, 3797, 318]])
        scale = 100.0 / float(hf_model(probe).logits.abs().max())
        hf_model.transformer.ln_f.weight.mul_(scale)
        hf_model.transformer.ln_f.bias.mul_(scale)
    hf_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    verdict = P.staircase_verdict(load_model(str(tmp_path), device="cpu"))
    assert verdict.max_abs_logit > 50
    assert verdict.trusted, verdict.note


# --- architectures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_neox(tmp_path_factory):
    """A 2-layer random GPT-NeoX (rotary positions, parallel attention and MLP), GPT-2's tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    folder = tmp_path_factory.mktemp("tiny-neox")
    tokenizer = gpt2_tokenizer()
    config = GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64,
                           vocab_size=len(tokenizer), initializer_range=0.3,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPTNeoXForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def test_exact_patching_runs_on_gpt_neox_through_hooks(tiny_neox):
    """Reference: one plain hooked forward pass per patch (hooked_sweep)."""
    inputs, metric, _, _ = ioi_inputs(tiny_neox)
    result = P.patch(tiny_neox, inputs, metric, site="resid_pre")
    assert result.options["engine"] == "hooked"
    assert "GPTNeoXForCausalLM blocks are not GPT-2's" in result.options["engine_note"]
    expected = hooked_sweep(tiny_neox, inputs, metric, "resid_pre", "layer_pos")
    assert (expected - result.corrupted_value).abs().max() > 1e-2
    assert torch.allclose(result.values, expected, atol=1e-5)
    heads = P.patch(tiny_neox, inputs, metric, site="z", granularity="head_pos")
    assert torch.allclose(heads.values, hooked_sweep(tiny_neox, inputs, metric, "z", "head_pos"),
                          atol=1e-5)
    assert tiny_neox.active_hook_count() == 0


def test_methods_that_assume_gpt2_blocks_refuse_gpt_neox_in_one_line(tiny_neox):
    inputs, metric, _, _ = ioi_inputs(tiny_neox)
    for call in (lambda: check_architecture(tiny_neox, STAIRCASE),
                 lambda: P.patch_path(tiny_neox, inputs, metric, "resid_final"),
                 lambda: P.attribution_patch(tiny_neox, inputs, metric)):
        with pytest.raises(UnsupportedArchitectureError) as refused:
            call()
        message = str(refused.value)
        assert "\n" not in message and "GPTNeoXForCausalLM" in message and "GPT-2" in message
    assert not P.staircase_verdict(tiny_neox).trusted
    with pytest.raises(InvalidOptionError, match="no 'resid_mid' activation"):
        P.patch(tiny_neox, inputs, metric, site="resid_mid")


def test_the_self_check_refuses_cached_runs_that_differ_from_the_bridges(tmp_path_factory,
                                                                       monkeypatch):
    """The engine's plain cached runs feed every patch; one that is off (here: block 1's
    residual stream shifted by 1e-2) must stop the fast engine, not only a wrong block."""
    from interp.patching import gpt2_block

    model = load_sharp_model(tmp_path_factory)
    real = gpt2_block.cached_forward

    def shifted(*args):
        logits, cache = real(*args)
        return logits, {name: value + 1e-2 if name == "blocks.1.hook_resid_pre" else value
                        for name, value in cache.items()}

    monkeypatch.setattr(gpt2_block, "cached_forward", shifted)
    verdict = P.staircase_verdict(model)
    assert not verdict.trusted and "cached activations off" in verdict.note
