"""Reading and writing SAEs in SAELens' folder format, without SAELens.

A folder holds `cfg.json` (d_in, d_sae, hook_name, architecture "standard" / "topk" /
"jumprelu", apply_b_dec_to_input, normalize_activations, ...; SAELens 6 nests hook and model
names under "metadata") and `sae_weights.safetensors` with W_enc [d_in, d_sae], W_dec
[d_sae, d_in], b_enc [d_sae], b_dec [d_in], and `threshold` [d_sae] for JumpReLU; TopK's k is
in the cfg. `sparsity.safetensors` (log10 feature density) is optional. SAEs trained on
TransformerLens' default weight processing saw a residual stream centred over d_model: when the
cfg says so (`model_from_pretrained_kwargs.center_writing_weights`, TransformerLens' default
when absent), inputs are centred here before encoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from interp.errors import SAEFormatError
from interp.sae.modules import NORMALIZATIONS, SAEConfig, SparseAutoencoder

CFG_FILE, WEIGHTS_FILE, SPARSITY_FILE = "cfg.json", "sae_weights.safetensors", "sparsity.safetensors"
ARCHITECTURE_NAMES = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu"}
# Sites TransformerLens' center_writing_weights centres (what a block writes into the stream).
CENTRED_SITES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_mlp_out",
                 "hook_attn_out")


def _cfg_value(cfg: dict, *names: str, default=None):
    for name in names:
        for place in (cfg, cfg.get("metadata") or {}):
            if name in place and place[name] is not None:
                return place[name]
    return default


def read_cfg(folder: str | Path) -> dict:
    """The parsed cfg.json of an SAE folder, or a clear error."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SAEFormatError(f"The SAE folder {folder} does not exist.")
    missing = [name for name in (CFG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise SAEFormatError(f"{folder} is not an SAELens folder: {' and '.join(missing)} "
                             "missing (a folder holds cfg.json and sae_weights.safetensors).")
    try:
        cfg = json.loads((folder / CFG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise SAEFormatError(f"{folder / CFG_FILE} is not valid JSON ({error}).") from error
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{folder / CFG_FILE} holds no settings (a JSON object was expected).")
    return cfg


def config_from_cfg(cfg: dict, centre_input: bool | None = None) -> SAEConfig:
    """Our SAEConfig from an SAELens cfg (`centre_input` overrides what the cfg implies)."""
    missing = [key for key in ("d_in", "d_sae") if key not in cfg]
    hook = _cfg_value(cfg, "hook_name", "hook_point")
    if hook is None:
        missing.append("hook_name")
    if missing:
        raise SAEFormatError(f"cfg.json lacks {', '.join(missing)}.")
    name = str(cfg.get("architecture", "standard")).lower()
    if name not in ARCHITECTURE_NAMES:
        raise SAEFormatError(f"Architecture {name!r} is not supported here. Supported: "
                             + ", ".join(repr(n) for n in ARCHITECTURE_NAMES) + ".")
    normalize = cfg.get("normalize_activations") or "none"
    if normalize == "expected_average_only_in":
        normalize = "none"  # SAELens folds that factor into the weights when it saves
    if normalize not in NORMALIZATIONS:
        raise SAEFormatError(f"normalize_activations {normalize!r} is not supported here. "
                             f"Supported: {', '.join(NORMALIZATIONS)}.")
    k = _cfg_value(cfg, "k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if centre_input is None:
        kwargs = _cfg_value(cfg, "model_from_pretrained_kwargs", default={}) or {}
        centre_input = bool(kwargs.get("center_writing_weights", True)) and \
            str(hook).endswith(CENTRED_SITES)
    return SAEConfig(d_in=int(cfg["d_in"]), d_sae=int(cfg["d_sae"]), hook_name=str(hook),
                     architecture=ARCHITECTURE_NAMES[name],
                     k=int(k) if k is not None else None,
                     apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
                     normalize_activations=normalize, centre_input=centre_input,
                     model_name=str(_cfg_value(cfg, "model_name", default="")))


def load_saelens(folder: str | Path, centre_input: bool | None = None,
                 device: torch.device | str = "cpu") -> SparseAutoencoder:
    """The SAE in an SAELens folder, on `device`, ready to encode raw activations."""
    folder = Path(folder).expanduser()
    config = config_from_cfg(read_cfg(folder), centre_input)
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise SAEFormatError(f"{folder / WEIGHTS_FILE} can't be read: {error}") from error
    if "threshold" not in weights and "log_threshold" in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    shapes = {"W_enc": (config.d_in, config.d_sae), "W_dec": (config.d_sae, config.d_in),
              "b_enc": (config.d_sae,), "b_dec": (config.d_in,)}
    if config.architecture == "jumprelu":
        shapes["threshold"] = (config.d_sae,)
    for name, shape in shapes.items():
        if name not in weights:
            raise SAEFormatError(f"{WEIGHTS_FILE} has no tensor {name!r} (it has "
                                 f"{', '.join(sorted(weights))}).")
        if tuple(weights[name].shape) != shape:
            raise SAEFormatError(f"{name} in {WEIGHTS_FILE} has shape "
                                 f"{tuple(weights[name].shape)}, but cfg.json (d_in "
                                 f"{config.d_in}, d_sae {config.d_sae}) implies {shape}.")
    sae = SparseAutoencoder(config)
    state = {name: weights[name].float() for name in shapes}
    state.setdefault("threshold", torch.zeros(config.d_sae))
    sae.load_state_dict(state)
    return sae.to(device).eval().requires_grad_(False)


def read_sparsity(folder: str | Path) -> torch.Tensor | None:
    """The log10 feature densities saved beside an SAE, if any."""
    path = Path(folder) / SPARSITY_FILE
    return load_file(str(path)).get("sparsity") if path.is_file() else None


def save_saelens(sae: SparseAutoencoder, folder: str | Path,
                 log10_density: torch.Tensor | None = None) -> Path:
    """Write `sae` as an SAELens folder (and its log10 densities as sparsity.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = sae.config
    layer = next((int(part) for part in config.hook_name.split(".") if part.isdigit()), 0)
    cfg = {"architecture": "standard" if config.architecture == "relu" else config.architecture,
           "d_in": config.d_in, "d_sae": config.d_sae, "hook_name": config.hook_name,
           "hook_layer": layer, "hook_head_index": None, "dtype": config.dtype, "device": "cpu",
           "model_name": config.model_name, "apply_b_dec_to_input": config.apply_b_dec_to_input,
           "normalize_activations": config.normalize_activations, "prepend_bos": True,
           "finetuning_scaling_factor": False,
           "model_from_pretrained_kwargs": {"center_writing_weights": config.centre_input},
           "activation_fn_kwargs": {"k": config.k} if config.architecture == "topk" else {},
           "metadata": {"hook_name": config.hook_name, "model_name": config.model_name,
                        "written_by": "GPT-2 Interpretability Workbench"}}
    if config.architecture == "topk":
        cfg["k"] = config.k
    (folder / CFG_FILE).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (
        ["threshold"] if config.architecture == "jumprelu" else [])
    state = sae.state_dict()
    save_file({name: state[name].detach().cpu().contiguous() for name in names},
              str(folder / WEIGHTS_FILE))
    if log10_density is not None:
        save_file({"sparsity": log10_density.detach().cpu().float().contiguous()},
                  str(folder / SPARSITY_FILE))
    return folder


def check_fits(sae: SparseAutoencoder, model, width: int) -> None:
    """Refuse an SAE whose input width is not the width of the model's activation at its hook."""
    if sae.config.d_in != width:
        raise SAEFormatError(
            f"This SAE reads {sae.config.d_in} numbers at {sae.config.hook_name}, but "
            f"{model.info.label} has {width} there (d_model {model.info.d_model}). Load an SAE "
            f"trained on this model (its cfg.json's model_name is "
            f"{sae.config.model_name or 'not given'}).")
