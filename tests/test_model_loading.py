"""Loading: weights on the requested device, sizes refused from config.json before any
download, and load failures told in our words (never PyTorch's advice to load unsafely).
"""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from interp import models as models_module
from interp.errors import ModelUnavailableError
from interp.models import estimate_params, load_model


def test_every_weight_is_on_the_device_the_info_names(tiny_model):
    device = tiny_model.device
    assert isinstance(device, torch.device) and str(device) == tiny_model.info.device
    tensors = [*tiny_model.bridge.parameters(), *tiny_model.bridge.buffers(),
               *tiny_model.bridge.original_model.parameters()]
    assert tensors and all(t.device == device for t in tensors)


def test_the_bridge_is_moved_to_the_requested_device_and_info_reports_where_weights_are(
        monkeypatch, tiny_model_dir):
    """No GPU here: the move to "cuda:0" is recorded and carried out on the CPU instead, and
    the info must then say "cpu" (where the weights are), not the device that was asked for."""
    from transformer_lens.model_bridge import TransformerBridge

    real_to = TransformerBridge.to
    requested = []

    def recording_to(self, device, *args, **kwargs):
        requested.append(str(device))
        return real_to(self, "cpu", *args, **kwargs)

    monkeypatch.setattr(TransformerBridge, "to", recording_to)
    model = load_model(str(tiny_model_dir), device="cuda:0")
    assert requested == ["cuda:0"]
    assert model.info.device == "cpu"


# --- sizes from config.json, before any download --------------------------------------------

SMALL_CONFIGS = [
    (GPT2LMHeadModel, GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=40, vocab_size=101)),
    (GPT2LMHeadModel, GPT2Config(n_layer=1, n_head=2, n_embd=16, n_inner=24, vocab_size=50)),
    (GPTNeoXForCausalLM, GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=2,
                                       hidden_size=16, intermediate_size=40, vocab_size=97)),
    (GPTNeoXForCausalLM, GPTNeoXConfig(num_hidden_layers=1, num_attention_heads=2, hidden_size=16,
                                       intermediate_size=40, vocab_size=97,
                                       tie_word_embeddings=True)),
    (GPTNeoForCausalLM, GPTNeoConfig(num_layers=2, num_heads=2, hidden_size=16, vocab_size=89,
                                     max_position_embeddings=30, attention_types=[[["global"], 2]])),
    (LlamaForCausalLM, LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=32, intermediate_size=48, vocab_size=83)),
    (LlamaForCausalLM, LlamaConfig(num_hidden_layers=1, num_attention_heads=4, hidden_size=32,
                                   intermediate_size=48, vocab_size=83, tie_word_embeddings=True,
                                   attention_bias=True)),
    (Qwen2ForCausalLM, Qwen2Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=32, intermediate_size=48, vocab_size=83)),
]


@pytest.mark.parametrize(("model_class", "config"), SMALL_CONFIGS,
                         ids=lambda value: getattr(value, "model_type", ""))
def test_parameter_count_from_config_equals_the_built_model(model_class, config, tmp_path):
    """Peer: transformers builds the model from the same config.json and counts its
    parameters (tied weights once)."""
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    expected = sum(p.numel() for p in model_class(config).parameters())
    assert estimate_params(saved) == expected


def test_gpt2_small_from_its_config_is_124m():
    """Reference: GPT-2 small's published count as transformers reports it, 124,439,808."""
    assert estimate_params({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
                            "vocab_size": 50257, "n_positions": 1024}) == 124_439_808


def huge_llama_config(folder):
    config = LlamaConfig(num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                         hidden_size=8192, intermediate_size=28672, vocab_size=128256)
    config.save_pretrained(folder)
    return folder / "config.json"


def test_a_hub_id_too_large_for_memory_is_refused_from_its_config_alone(monkeypatch, tmp_path):
    config_file = huge_llama_config(tmp_path)
    fetched = []

    def config_only(repo_id, filename, **kwargs):
        fetched.append(filename)
        return str(config_file)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were requested")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", config_only)
    monkeypatch.setattr(models_module, "hub_cached", lambda repo_id: True)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_weights)
    with pytest.raises(ModelUnavailableError) as error:
        load_model("someone/llama-70b")
    message = str(error.value)
    assert "70,554M parameters" in message and "free memory" in message
    assert fetched == ["config.json"]


def test_a_large_local_folder_is_refused_before_its_weights_are_read(monkeypatch, tmp_path,
                                                                   tiny_model_dir):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    huge_llama_config(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"never read")
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained",
                        lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(ModelUnavailableError, match="free memory"):
        load_model(str(tmp_path))


# --- failures in our words --------------------------------------------------------------------

def folder_copy(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def assert_in_our_words(message: str, folder) -> None:
    assert "weights_only" not in message and "torch.load" not in message
    assert "arbitrary code" not in message
    assert message.count(str(folder)) == 1


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_random_bytes_as_weights_are_described_without_unsafe_advice(weights_file, tmp_path,
                                                                    tiny_model_dir):
    folder = folder_copy(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / weights_file).write_bytes(os.urandom(4096))
    with pytest.raises(ModelUnavailableError) as error:
        load_model(str(folder), device="cpu")
    message = str(error.value)
    assert_in_our_words(message, folder)
    assert "could not be read" in message and "damaged" in message


def test_any_random_bytes_in_a_pickled_bin_are_described_as_unreadable(tmp_path, tiny_model_dir):
    """Reference: the file is noise, so every load must say it could not be read. Random bytes
    fail inside torch's reader with whatever they trip ("pop from empty list", a KeyError, a
    UnicodeDecodeError: about 1 file in 6, measured), which was shown as "Could not load ...:
    pop from empty list"; 24 seeded files hold the message to every kind."""
    folder = folder_copy(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    other_messages = []
    for seed in range(24):
        (folder / "pytorch_model.bin").write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(ModelUnavailableError) as error:
            load_model(str(folder), device="cpu")
        if "could not be read" not in str(error.value):
            other_messages.append((seed, str(error.value)))
    assert not other_messages


def test_a_config_that_is_not_json_names_the_file_and_not_the_network(tmp_path, tiny_model_dir):
    folder = folder_copy(tiny_model_dir, tmp_path)
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2')
    with pytest.raises(ModelUnavailableError) as error:
        load_model(str(folder), device="cpu")
    message = str(error.value)
    assert_in_our_words(message, folder)
    assert "config.json" in message and "not valid JSON" in message
    assert "offline" not in message and "cache" not in message


def test_an_unknown_model_type_is_named(tmp_path, tiny_model_dir):
    folder = folder_copy(tiny_model_dir, tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "nonsense"}))
    with pytest.raises(ModelUnavailableError, match="model type 'nonsense'") as error:
        load_model(str(folder), device="cpu")
    assert "offline" not in str(error.value)
