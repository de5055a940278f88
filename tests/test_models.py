"""Loading: the registry, ModelInfo, peer equality with Hugging Face, and clear errors offline."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from interp import MODEL_REGISTRY, ModelUnavailableError, load_model
from interp import models as models_module
from interp.models import resolve_source
from interp.random_models import save_random_gpt2
from tests.conftest import TINY_SHAPE


def test_registry_has_every_gpt2_size_and_the_demo_model():
    sources = {key: spec.source for key, spec in MODEL_REGISTRY.items()}
    assert sources["gpt2"] == "openai-community/gpt2"
    assert sources["gpt2-medium"] == "openai-community/gpt2-medium"
    assert sources["gpt2-large"] == "openai-community/gpt2-large"
    assert sources["gpt2-xl"] == "openai-community/gpt2-xl"
    assert MODEL_REGISTRY["demo"].is_demo and MODEL_REGISTRY["demo"].is_local
    # GPT-2 small is 124,439,808 parameters (Radford et al. 2019, as counted by transformers).
    assert MODEL_REGISTRY["gpt2"].ram_gb == pytest.approx(124_439_808 * 12 / 1e9, abs=0.05)


def test_model_info_matches_the_folder_config(tiny_model, tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    info = tiny_model.info
    assert (info.n_layers, info.n_heads, info.d_model, info.n_ctx, info.d_vocab) == (
        config["n_layer"], config["n_head"], config["n_embd"], config["n_positions"],
        config["vocab_size"])
    assert info.d_head == config["n_embd"] // config["n_head"]
    peer = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    assert info.n_params == sum(p.numel() for p in peer.parameters())
    assert info.device == "cpu" and not info.is_demo


def test_logits_equal_hugging_face_and_attention_is_eager(tiny_model, tiny_model_dir):
    peer = GPT2LMHeadModel.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    tokens = tiny_model.to_tokens("The cat is on the mat because it")
    with torch.no_grad():
        expected = peer(tokens).logits
    assert torch.allclose(tiny_model.logits(tokens), expected, atol=1e-5)
    assert tiny_model.bridge.original_model.config._attn_implementation == "eager"


def test_patterns_from_hooks_equal_hugging_face_output_attentions(tiny_model, tiny_model_dir):
    peer = GPT2LMHeadModel.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    tokens = tiny_model.to_tokens("Mary and John went to the store")
    seen = {}

    def keep(pattern, hook):
        seen[hook.name] = pattern.detach().clone()

    with tiny_model.hooked([(f"blocks.{layer}.attn.hook_pattern", keep)
                            for layer in range(tiny_model.info.n_layers)]) as bridge:
        bridge(tokens)
    with torch.no_grad():
        attentions = peer(tokens, output_attentions=True).attentions
    for layer, expected in enumerate(attentions):
        assert torch.allclose(seen[f"blocks.{layer}.attn.hook_pattern"], expected, atol=1e-5)


def test_parameters_are_frozen(tiny_model):
    assert not any(p.requires_grad for p in tiny_model.bridge.parameters())


def test_gpt2_offline_and_uncached_says_what_to_do(monkeypatch):
    monkeypatch.setattr(models_module, "hub_cached", lambda repo_id: False)
    with pytest.raises(ModelUnavailableError) as error:
        load_model("gpt2")
    message = str(error.value)
    assert "not in the local Hugging Face cache" in message and "demo model" in message


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))


def test_folder_without_config_is_reported(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        load_model(str(tmp_path))


def test_folder_without_weights_is_reported(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelUnavailableError, match="no weights"):
        load_model(str(tmp_path))


def test_folder_without_tokenizer_is_reported(tmp_path, tiny_model_dir):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(ModelUnavailableError, match="no tokenizer"):
        load_model(str(tmp_path))


def test_corrupt_weights_are_a_typed_error(tmp_path, tiny_model_dir):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError):
        load_model(str(tmp_path))


def test_too_little_memory_is_refused_before_loading(monkeypatch, tiny_model_dir):
    class Tiny:
        available = 1_000

    monkeypatch.setattr(models_module.psutil, "virtual_memory", lambda: Tiny())
    with pytest.raises(ModelUnavailableError, match="free memory"):
        load_model(str(tiny_model_dir))


def test_empty_name_lists_the_choices():
    with pytest.raises(ModelUnavailableError, match="gpt2-medium"):
        load_model("  ")


def test_other_hub_ids_pass_through_and_registry_sources_resolve():
    assert resolve_source("EleutherAI/pythia-70m") == ("EleutherAI/pythia-70m", None)
    source, spec = resolve_source("openai-community/gpt2-large")
    assert spec is MODEL_REGISTRY["gpt2-large"] and source == spec.source


def test_a_second_folder_loads_independently(tiny_model, tmp_path):
    """Reference: Hugging Face's own `GPT2LMHeadModel.from_pretrained` of the second folder; the
    first model's logits on the same tokens must differ (both folders share one shape, so only
    the weights tell them apart)."""
    folder = save_random_gpt2(tmp_path / "other", seed=1, **TINY_SHAPE)
    model = load_model(str(folder), device="cpu")
    assert model.info.n_layers == TINY_SHAPE["n_layer"]
    assert model.active_hook_count() == 0
    tokens = model.to_tokens("The cat sat on the mat")
    with torch.no_grad():
        reference = GPT2LMHeadModel.from_pretrained(folder).eval()(tokens).logits
    logits = model.logits(tokens)
    assert torch.allclose(logits, reference, atol=1e-4), (logits - reference).abs().max()
    assert (tiny_model.logits(tokens) - logits).abs().max() > 0.1


def test_token_ids_have_no_bos_and_to_tokens_has_one(tiny_model):
    assert tiny_model.token_ids(" Paris") == [6342]
    assert tiny_model.to_tokens(" Paris").tolist() == [[50256, 6342]]


def test_to_tokens_never_truncates(tiny_model):
    n_ctx = tiny_model.info.n_ctx
    assert tiny_model.to_tokens(" the" * (n_ctx + 10)).shape[1] == n_ctx + 11
