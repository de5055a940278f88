"""Loading models, and sharing one loaded model safely between sessions and threads.

A model is named by a registry key (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`, `demo`), a
local Hugging Face folder, or any other Hugging Face causal-LM id that TransformerLens supports.
It is loaded through TransformerLens 4's `TransformerBridge` with eager attention, so every hook
(`blocks.{l}.hook_resid_pre`, `blocks.{l}.attn.hook_pattern`, ...) sees real activations.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil
import torch

from interp.errors import ModelUnavailableError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEMO_MODEL_DIR = ASSETS_DIR / "models" / "demo-gpt2"

HookList = Sequence[tuple[str | Callable[[str], bool], Callable]]


@dataclass(frozen=True)
class ModelSpec:
    """A model the app offers by name, with what it costs to run."""

    key: str
    label: str
    source: str
    n_params: int
    description: str
    is_demo: bool = False

    @property
    def ram_gb(self) -> float:
        """Memory needed to load and run it in float32: weights plus working room (~3x)."""
        return round(self.n_params * 4 * 3 / 1e9, 1)

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_absolute()


MODEL_REGISTRY: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec("gpt2", "GPT-2 small", "openai-community/gpt2", 124_439_808,
                  "12 layers, 12 heads, d_model 768: the model most interpretability work studies."),
        ModelSpec("gpt2-medium", "GPT-2 medium", "openai-community/gpt2-medium", 354_823_168,
                  "24 layers, 16 heads, d_model 1024."),
        ModelSpec("gpt2-large", "GPT-2 large", "openai-community/gpt2-large", 774_030_080,
                  "36 layers, 20 heads, d_model 1280."),
        ModelSpec("gpt2-xl", "GPT-2 XL", "openai-community/gpt2-xl", 1_557_611_200,
                  "48 layers, 25 heads, d_model 1600."),
        ModelSpec("demo", "Demo model (bundled, not GPT-2)", str(DEMO_MODEL_DIR), 1_051_520,
                  "A small GPT-2-architecture model shipped with the app and trained on synthetic "
                  "text with known behaviours (IOI, agreement, facts, induction); works offline.",
                  is_demo=True),
    )
}


@dataclass(frozen=True)
class ModelInfo:
    """What a reader needs to know about a loaded model (the model card on the Home page)."""

    name: str
    label: str
    source: str
    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    n_params: int
    device: str
    dtype: str
    is_demo: bool


class LoadedModel:
    """A loaded model shared by every session: run it only through `run` or `hooked`.

    The bridge is shared across threads, and a hook added by one run would be seen by any other
    forward pass happening at the same time; so every forward pass holds `lock`, and hooks live
    only inside `hooked()`, which removes them before releasing the lock.
    """

    def __init__(self, bridge, info: ModelInfo):
        self.bridge = bridge
        self.info = info
        self.lock = threading.RLock()

    @property
    def tokenizer(self):
        return self.bridge.tokenizer

    @property
    def name(self) -> str:
        return self.info.name

    def to_tokens(self, prompt: str | list[str], prepend_bos: bool = True) -> torch.Tensor:
        """Token ids [batch, pos], with the BOS token first unless `prepend_bos=False`.

        Never truncated: a prompt longer than the context is for `check_prompt` to refuse.
        """
        return self.bridge.to_tokens(prompt, prepend_bos=prepend_bos, truncate=False)

    def token_ids(self, text: str) -> list[int]:
        """Ids of `text` alone, with no BOS (TransformerLens makes the tokenizer add one)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids

    @contextlib.contextmanager
    def hooked(self, fwd_hooks: HookList = (), bwd_hooks: HookList = ()) -> Iterator:
        """Yield the bridge with these hooks added, holding the lock; all hooks go on exit."""
        with self.lock:
            try:
                with self.bridge.hooks(fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks),
                                       reset_hooks_end=True):
                    yield self.bridge
            finally:
                self.bridge.reset_hooks(including_permanent=False)

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, pos, d_vocab] of a plain forward pass (no hooks)."""
        with self.hooked() as bridge:
            return bridge(tokens.to(self.info.device))

    def active_hook_count(self) -> int:
        """How many hooks are attached right now (0 whenever no `hooked()` block is open)."""
        total = 0
        for hook_point in self.bridge.hook_dict.values():
            total += len(hook_point._forward_hooks) + len(hook_point._backward_hooks)
            total += len(getattr(hook_point, "_forward_pre_hooks", {}))
        return total


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_source(name_or_path: str) -> tuple[str, ModelSpec | None]:
    """Map a registry key, a local folder or a Hugging Face id to what `from_pretrained` takes."""
    name = name_or_path.strip()
    if not name:
        raise ModelUnavailableError(
            "No model given. Choose one of: " + ", ".join(MODEL_REGISTRY) +
            ", a local Hugging Face folder, or a Hugging Face model id.")
    if name in MODEL_REGISTRY:
        spec = MODEL_REGISTRY[name]
        return spec.source, spec
    for spec in MODEL_REGISTRY.values():
        if name == spec.source:
            return spec.source, spec
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        return str(path.resolve()), None
    return name, None


def hub_cached(repo_id: str) -> bool:
    """True when the Hugging Face cache already holds this model's config (no network needed)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connection to the Hub; a refused or unresolvable host answers at once.

    Without this check an uncached model spends ~30 s in the Hub client's retries before failing.
    """
    if hub_offline():
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def is_available(spec: ModelSpec) -> bool:
    """Can this model load without a download? (A local folder that exists, or a cached id.)"""
    if spec.is_local:
        return (Path(spec.source) / "config.json").is_file()
    return hub_cached(spec.source)


def available_models() -> list[ModelSpec]:
    """The registry's models that load right now with no network."""
    return [spec for spec in MODEL_REGISTRY.values() if is_available(spec)]


def check_local_folder(folder: Path) -> None:
    """Raise a clear error unless `folder` looks like a Hugging Face causal-LM folder."""
    if not folder.is_dir():
        raise ModelUnavailableError(f"The folder {folder} does not exist.")
    if not (folder / "config.json").is_file():
        raise ModelUnavailableError(
            f"{folder} is not a Hugging Face model folder: it has no config.json. Save a model "
            "with `model.save_pretrained(folder)` and `tokenizer.save_pretrained(folder)`.")
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    if not has_weights:
        raise ModelUnavailableError(
            f"{folder} has a config.json but no weights (*.safetensors or *.bin).")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise ModelUnavailableError(f"{folder} has no tokenizer files (tokenizer.json or vocab.json).")


def check_memory(n_params: int, label: str) -> None:
    """Refuse to start a load that can't fit, instead of letting the machine swap or die."""
    needed = n_params * 4 * 1.5
    available = psutil.virtual_memory().available
    if needed > available:
        raise ModelUnavailableError(
            f"{label} needs about {needed / 1e9:.1f} GB of free memory to load in float32 and "
            f"only {available / 1e9:.1f} GB is free. Choose a smaller model, or close other programs.")


def estimate_params_from_config(folder: Path) -> int:
    """Rough parameter count from a GPT-2-style config, for the memory check before loading."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return 0
    d_model = config.get("n_embd") or config.get("hidden_size") or 0
    n_layers = config.get("n_layer") or config.get("num_hidden_layers") or 0
    vocab = config.get("vocab_size") or 0
    return int(12 * n_layers * d_model**2 + vocab * d_model)


def load_model(name_or_path: str, device: str | None = None,
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model by registry key, local Hugging Face folder, or Hugging Face id.

    Raises `ModelUnavailableError` with what to do when the model is missing offline, the folder
    is not a model, or memory is short. Parameters are frozen: analyses take gradients with
    respect to activations, never weights.
    """
    source, spec = resolve_source(name_or_path)
    label = spec.label if spec else source
    is_folder = Path(source).is_absolute()
    if is_folder:
        check_local_folder(Path(source))
        check_memory(spec.n_params if spec else estimate_params_from_config(Path(source)), label)
    else:
        if spec:
            check_memory(spec.n_params, label)
        if not hub_cached(source) and not hub_reachable():
            raise ModelUnavailableError(
                f"{label} ({source}) is not in the local Hugging Face cache and the Hugging Face "
                "Hub can't be reached (offline, or HF_HUB_OFFLINE=1). Connect once to download "
                "it, or point the app at a local folder holding the model, or use the bundled "
                "demo model.")
    device = device or default_device()
    bridge, n_params = boot_bridge(source, label, device, dtype)
    info = model_info(bridge, n_params, name_or_path.strip(), label, source, spec, device, dtype)
    return LoadedModel(bridge, info)


def boot_bridge(source: str, label: str, device: str, dtype: torch.dtype):
    """Boot a TransformerBridge with eager attention, turning library failures into our errors.

    Returns the bridge and the parameter count of the Hugging Face model (the bridge holds split
    q/k/v copies of GPT-2's fused weights, so counting its parameters would overstate the size).
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(source, attn_implementation="eager",
                                                        dtype=dtype)
        n_params = sum(p.numel() for p in hf_model.parameters())
        bridge = TransformerBridge.boot_transformers(source, hf_model=hf_model, device=device,
                                                     dtype=dtype)
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise ModelUnavailableError(
            f"Ran out of memory while loading {label}. Choose a smaller model.") from error
    except (OSError, ValueError, ConnectionError) as error:
        raise ModelUnavailableError(
            f"Could not load {label} ({source}): {first_line(error)} If you are offline, GPT-2 "
            "must already be in the Hugging Face cache; otherwise use a local folder or the demo "
            "model. Other Hugging Face ids must be causal language models that TransformerLens "
            "supports (GPT-2, GPT-Neo, Pythia, ...).") from error
    except Exception as error:  # TransformerLens raises bare errors for unsupported architectures
        raise ModelUnavailableError(
            f"TransformerLens could not load {label} ({source}): {first_line(error)}") from error
    if bridge.tokenizer is None:
        raise ModelUnavailableError(f"{label} has no tokenizer; add tokenizer files to its folder.")
    bridge.eval()
    for parameter in bridge.parameters():
        parameter.requires_grad_(False)
    return bridge, n_params


def model_info(bridge, n_params: int, name: str, label: str, source: str, spec: ModelSpec | None,
               device: str, dtype: torch.dtype) -> ModelInfo:
    cfg = bridge.cfg
    architecture = type(bridge.original_model).__name__
    return ModelInfo(
        name=name, label=label, source=source, architecture=architecture,
        n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model, d_head=cfg.d_head,
        d_mlp=cfg.d_mlp or 4 * cfg.d_model, d_vocab=cfg.d_vocab, n_ctx=cfg.n_ctx,
        n_params=n_params, device=str(device), dtype=str(dtype).replace("torch.", ""),
        is_demo=bool(spec and spec.is_demo))


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).rstrip(".") + "."
