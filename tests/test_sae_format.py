"""SAELens folders: written here exactly as the format specifies, read by `interp.sae.saelens`.

References: encode/decode written out by hand in float64 NumPy from the documented rule
(f = act((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec, with the cfg's preprocessing), and
a save/load round trip compared tensor for tensor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from interp.errors import SAEFormatError
from interp.sae import check_fits, load_saelens, save_saelens
from interp.sae.buffer import hook_width
from interp.sae.modules import SAEConfig, SparseAutoencoder

D_IN, D_SAE = 8, 24


def write_folder(folder, architecture="standard", centred=None, normalize="none", k=None,
                 seed=0, d_in=D_IN):
    generator = torch.Generator().manual_seed(seed)
    weights = {"W_enc": torch.randn(d_in, D_SAE, generator=generator),
               "W_dec": torch.randn(D_SAE, d_in, generator=generator),
               "b_enc": torch.randn(D_SAE, generator=generator) * 0.1,
               "b_dec": torch.randn(d_in, generator=generator) * 0.1}
    if architecture == "jumprelu":
        weights["threshold"] = torch.rand(D_SAE, generator=generator)
    cfg = {"architecture": architecture, "d_in": d_in, "d_sae": D_SAE,
           "hook_name": "blocks.1.hook_resid_pre", "hook_layer": 1, "dtype": "float32",
           "apply_b_dec_to_input": True, "normalize_activations": normalize,
           "model_name": "gpt2-small"}
    if centred is not None:
        cfg["model_from_pretrained_kwargs"] = {"center_writing_weights": centred}
    if k is not None:
        cfg["activation_fn_kwargs"] = {"k": k}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(weights, str(folder / "sae_weights.safetensors"))
    return {name: value.double().numpy() for name, value in weights.items()}


def by_hand(w, x, architecture, centred=False, k=None, layer_norm=False):
    """The documented SAELens rule, in float64 NumPy."""
    mean = x.mean(-1, keepdims=True) if (centred or layer_norm) else np.zeros_like(x[:, :1])
    std = (x - mean).std(-1, ddof=1, keepdims=True) if layer_norm else np.ones_like(x[:, :1])
    prepared = (x - mean) / (std + 1e-5 if layer_norm else 1.0)
    pre = (prepared - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if architecture == "topk":
        f = np.zeros_like(pre)
        top = np.argsort(-pre, axis=-1)[:, :k]
        np.put_along_axis(f, top, np.maximum(np.take_along_axis(pre, top, -1), 0), -1)
    elif architecture == "jumprelu":
        f = pre * (pre > w["threshold"])
    else:
        f = np.maximum(pre, 0)
    return f, (f @ w["W_dec"] + w["b_dec"]) * std + mean


CASES = [("standard", False, None), ("standard", True, None), ("topk", False, 5),
         ("topk", True, 5), ("jumprelu", False, None), ("jumprelu", True, None)]


@pytest.mark.parametrize("architecture, centred, k", CASES)
def test_encode_and_decode_equal_the_documented_rule_by_hand(tmp_path, architecture, centred, k):
    """Reference: the format's encode/decode rule computed by hand in float64 (`by_hand`)."""
    w = write_folder(tmp_path / "sae", architecture, centred=centred, k=k)
    sae = load_saelens(tmp_path / "sae")
    x = np.random.default_rng(1).normal(size=(16, D_IN)) + 3.0  # an offset that centring removes
    expected_codes, expected_out = by_hand(w, x, "relu" if architecture == "standard"
                                           else architecture, centred=centred, k=k)
    out, codes = sae(torch.tensor(x, dtype=torch.float32))
    assert np.abs(codes.double().numpy() - expected_codes).max() < 1e-6 * max(1, np.abs(expected_codes).max())
    assert np.abs(out.double().numpy() - expected_out).max() < 1e-6 * max(1, np.abs(expected_out).max())


def test_a_cfg_without_model_kwargs_centres_residual_inputs_as_transformer_lens_did(tmp_path):
    """Reference: TransformerLens' `center_writing_weights` default (True) centres the residual
    stream; the by-hand rule with centring must match, the rule without must not."""
    w = write_folder(tmp_path / "sae", "standard", centred=None)
    sae = load_saelens(tmp_path / "sae")
    assert sae.config.centre_input
    x = np.random.default_rng(2).normal(size=(8, D_IN)) + 5.0
    _, centred = by_hand(w, x, "relu", centred=True)
    _, raw = by_hand(w, x, "relu", centred=False)
    out = sae.reconstruct(torch.tensor(x, dtype=torch.float32)).double().numpy()
    assert np.abs(out - centred).max() < 1e-5
    assert np.abs(out - raw).max() > 1e-2


def test_layer_norm_preprocessing_matches_saelens_rule(tmp_path):
    """Reference: SAELens' layer_norm rule by hand (centre, divide by std + eps, undo by std);
    activations this small (std ~1e-3) make the eps visible."""
    w = write_folder(tmp_path / "sae", "standard", centred=False, normalize="layer_norm")
    x = np.random.default_rng(3).normal(size=(8, D_IN)) * 1e-3 + 1e-3
    _, expected = by_hand(w, x, "relu", layer_norm=True)
    out = load_saelens(tmp_path / "sae").reconstruct(torch.tensor(x, dtype=torch.float32))
    assert np.abs(out.double().numpy() - expected).max() < 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("architecture", ["relu", "topk", "jumprelu"])
def test_a_saved_sae_reloads_bit_for_bit(tmp_path, architecture):
    """Invariant: save then load gives equal tensors (torch.equal) and the same settings."""
    config = SAEConfig(d_in=D_IN, d_sae=D_SAE, hook_name="blocks.0.hook_mlp_out",
                       architecture=architecture, k=4 if architecture == "topk" else None,
                       centre_input=architecture != "relu", model_name="demo")
    sae = SparseAutoencoder(config)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn_like(parameter))
        if architecture == "jumprelu":  # the only rule with thresholds in the file
            sae.threshold.copy_(torch.rand_like(sae.threshold))
    loaded = load_saelens(save_saelens(sae, tmp_path / "saved"))
    assert loaded.config == config
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_folder_whose_d_in_does_not_match_the_model_is_refused_clearly(tmp_path, tiny_model):
    """Reference: the tiny model's d_model (32) against the folder's d_in (8)."""
    write_folder(tmp_path / "sae", "standard", centred=False)
    sae = load_saelens(tmp_path / "sae")
    with pytest.raises(SAEFormatError, match=r"reads 8 numbers .* has 32 there"):
        check_fits(sae, tiny_model, hook_width(tiny_model, sae.config.hook_name))


def test_broken_folders_say_what_is_missing(tmp_path):
    """Reference: the format's required files and tensors."""
    with pytest.raises(SAEFormatError, match="does not exist"):
        load_saelens(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEFormatError, match="cfg.json and sae_weights.safetensors missing"):
        load_saelens(tmp_path / "empty")
    write_folder(tmp_path / "gated", "gated")
    with pytest.raises(SAEFormatError, match="'gated' is not supported"):
        load_saelens(tmp_path / "gated")
    write_folder(tmp_path / "jump", "standard")
    cfg = json.loads((tmp_path / "jump" / "cfg.json").read_text())
    (tmp_path / "jump" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "jumprelu"}))
    with pytest.raises(SAEFormatError, match="no tensor 'threshold'"):
        load_saelens(tmp_path / "jump")


def test_an_sae_for_a_layer_the_model_lacks_is_refused_clearly(tiny_model):
    """Reference: the tiny model's 2 layers (an SAE for blocks.5 can't apply)."""
    from interp.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="has no hook 'blocks.5.hook_resid_pre'"):
        hook_width(tiny_model, "blocks.5.hook_resid_pre")
