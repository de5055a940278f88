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
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil
import torch

from interp.errors import LeftoverHooksError, ModelUnavailableError, NestedHookError
from interp.model_queue import ModelQueue, Ticket, current_analysis
from interp.tokens import display_tokens, token_texts

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
        ModelSpec("demo", "Demo model (not GPT-2)", str(DEMO_MODEL_DIR), 804_352,
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

    @property
    def shown_source(self) -> str:
        """Where the model came from, as a reader may see it: a registered model's Hub id, or
        "bundled with the app"; never the server's absolute path to a folder it ships."""
        spec = MODEL_REGISTRY.get(self.name)
        if spec is None:
            return self.name  # what the user typed: a Hub id or their own folder
        return "bundled with the app" if spec.is_local else spec.source

    @property
    def params_label(self) -> str:
        return param_count_label(self.n_params)


def param_count_label(n_params: int) -> str:
    """One way to write a parameter count everywhere: 124M, 1.05M."""
    if n_params >= 10_000_000:
        return f"{n_params / 1e6:,.0f}M"
    return f"{n_params / 1e6:.2f}M"


class ModelLock:
    """The lock every forward pass of one shared model holds: fair, not re-entrant, and loud
    about nesting.

    Holding it means holding the model's turn in its FIFO queue (`interp.model_queue`): inside
    an `analysis()` the first pass waits for the turn and the turn lasts to the analysis's end,
    and each later pass first asks whether the analysis is still wanted; outside one, each hold
    is a turn of its own. A second `hooked()` opened inside the first in the same thread would
    otherwise either deadlock (a plain lock) or, as an `RLock` with a hook reset did, strip the
    outer block's hooks and give wrong numbers with no error. Here it raises `NestedHookError`.
    """

    def __init__(self, label: str):
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._label = label
        self.queue = ModelQueue(label)
        self._own_turn: Ticket | None = None  # a turn taken for this one hold, ended on release

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._owner == threading.get_ident():
            raise NestedHookError(
                f"A hooked() or exclusive() block on {self._label} is already open in this "
                "thread; blocks on one model can't be nested (the inner one would run with the "
                "outer one's hooks). Pass every hook to one hooked() call, or close the first "
                "block before starting the next (model.logits() opens one too).")
        own_turn, analysis = None, current_analysis()
        wait_s = 0.0 if not blocking else (timeout if timeout >= 0 else None)
        if self.queue.holds_turn():
            if analysis is not None:
                analysis.raise_if_cancelled()  # a batch boundary: stop if no one wants it now
        elif analysis is not None and wait_s is None:
            analysis.take_turn(self.queue)
        else:
            own_turn = self.queue.enter(timeout_s=wait_s)
            if own_turn is None:
                return False
        self._lock.acquire()  # free: only the turn's holder takes it
        self._owner = threading.get_ident()
        self._own_turn = own_turn
        return True

    def release(self) -> None:
        own_turn, self._own_turn = self._own_turn, None
        self._owner = None
        self._lock.release()
        if own_turn is not None:
            self.queue.leave(own_turn)

    def locked(self) -> bool:
        return self._lock.locked() or self.queue.running_ticket() is not None

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class SerializedTokenizer:
    """A tokenizer whose every call holds one lock.

    Fast (Rust) tokenizers raise "Already borrowed" when two threads use one at once, so the
    shared model's tokenizer is only reached through this wrapper or `LoadedModel`'s methods.
    """

    def __init__(self, tokenizer, lock: threading.RLock):
        self._tokenizer = tokenizer
        self._lock = lock

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokenizer)

    def __getattr__(self, name: str):
        with self._lock:
            value = getattr(self._tokenizer, name)
        if not callable(value):
            return value

        def serialized(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return serialized


@dataclass(frozen=True)
class TokenEncoding:
    """Token ids of a text (no BOS) and each token's character span [start, end)."""

    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]


TRANSFORMERS_CAPTURE_MODULE = "transformers.utils.output_capturing"
# Where torch keeps a module's hooks; a "full" backward hook also lives in `_backward_hooks`.
MODULE_HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                      "_backward_pre_hooks")
# Tables keyed by the same handle id as `_forward_hooks` / `_forward_pre_hooks` entries.
HOOK_FLAG_TABLES = {"_forward_hooks": ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"),
                    "_forward_pre_hooks": ("_forward_pre_hooks_with_kwargs",)}


def is_transformers_capture_hook(hook) -> bool:
    """Transformers installs these once per model, for `output_attentions` and the like, and
    marks the model as hooked: they are inert unless a caller asks for those outputs, and removing
    them would silently break that request for the model's life, so they count as the model's own.
    """
    return getattr(hook, "__module__", "") == TRANSFORMERS_CAPTURE_MODULE


class LoadedModel:
    """A loaded model shared by every session: run it only through `logits`, `hooked`, `exclusive`.

    The bridge is shared across threads, and a hook added by one run would be seen by any other
    forward pass happening at the same time; so every forward pass holds `lock`, and hooks live
    only inside `hooked()` (or `exclusive()`), which removes them before releasing the lock.
    Tokenizing holds a second lock, so it never waits for a forward pass.
    """

    def __init__(self, bridge, info: ModelInfo):
        self.bridge = bridge
        self.info = info
        self.lock = ModelLock(info.label)
        self._tokenizer_lock = threading.RLock()
        self._tokenizer = SerializedTokenizer(bridge.tokenizer, self._tokenizer_lock)

    @property
    def tokenizer(self) -> SerializedTokenizer:
        """The tokenizer, every call serialized; prefer `encode`, `token_ids`, `decode`."""
        return self._tokenizer

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def device(self) -> torch.device:
        """Where the weights are: create tensors for this model here."""
        return torch.device(self.info.device)

    def to_tokens(self, prompt: str | list[str], prepend_bos: bool = True) -> torch.Tensor:
        """Token ids [batch, pos] on the CPU, with the BOS token first unless `prepend_bos=False`.

        Never truncated: a prompt longer than the context is for `check_prompt` to refuse.
        """
        with self._tokenizer_lock:
            tokens = self.bridge.to_tokens(prompt, prepend_bos=prepend_bos, truncate=False)
        return tokens.cpu()

    def encode(self, text: str) -> TokenEncoding:
        """Ids of `text` alone (no BOS) with each token's character span in `text`."""
        with self._tokenizer_lock:
            encoding = self.bridge.tokenizer(text, add_special_tokens=False,
                                             return_offsets_mapping=True)
        return TokenEncoding(ids=tuple(encoding["input_ids"]),
                             offsets=tuple(tuple(span) for span in encoding["offset_mapping"]))

    def token_ids(self, text: str) -> list[int]:
        """Ids of `text` alone, with no BOS (TransformerLens makes the tokenizer add one)."""
        with self._tokenizer_lock:
            return list(self.bridge.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        with self._tokenizer_lock:
            return self.bridge.tokenizer.decode([int(t) for t in token_ids])

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        """Each token's raw text (for exports; see `interp.tokens.token_texts`)."""
        with self._tokenizer_lock:
            return token_texts(self.bridge.tokenizer, token_ids)

    def display_tokens(self, token_ids: Sequence[int]) -> list[str]:
        """Tokens as a reader should see them (see `interp.tokens`)."""
        with self._tokenizer_lock:
            return display_tokens(self.bridge.tokenizer, token_ids)

    @contextlib.contextmanager
    def hooked(self, fwd_hooks: HookList = (), bwd_hooks: HookList = ()) -> Iterator:
        """Yield the bridge with these hooks added, holding the lock; they go on exit.

        Only the hooks this block added are removed. Opening a second block on this model
        inside it, in the same thread, raises `NestedHookError`.
        """
        with self.exclusive(), self.bridge.hooks(fwd_hooks=list(fwd_hooks),
                                                 bwd_hooks=list(bwd_hooks),
                                                 reset_hooks_end=True) as bridge:
            yield bridge

    @contextlib.contextmanager
    def exclusive(self) -> Iterator:
        """Yield the bridge for code that registers its own torch hooks (captum, shap, LRP).

        Holds the same lock as `hooked()`. On exit, any module hook the block left behind is
        removed and `LeftoverHooksError` is raised (when the block itself raised, its error
        wins and the leftovers are still removed). Gradients are the caller's choice
        (`torch.enable_grad()`); parameters stay frozen.
        """
        with self.lock:
            before = set(self._module_hooks())
            try:
                yield self.bridge
            except BaseException:
                self._remove_hooks(self._hooks_added_since(before))
                raise
            leftovers = self._hooks_added_since(before)
            if leftovers:
                self._remove_hooks(leftovers)
                raise LeftoverHooksError(
                    f"{len(leftovers)} module hook(s) were still attached to {self.info.label} "
                    "when the exclusive() block ended; they have been removed. Remove every hook "
                    "you register (keep its handle and call handle.remove()) before the block "
                    "ends.")

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, pos, d_vocab] of a plain forward pass (no hooks)."""
        with self.hooked() as bridge:
            return bridge(tokens.to(self.device))

    def active_hook_count(self) -> int:
        """Torch module hooks (forward, forward-pre, backward, backward-pre) attached right now,
        on every submodule of the bridge and of the Hugging Face model inside it, not only on
        TransformerLens' HookPoints. 0 whenever no `hooked()` / `exclusive()` block is open.

        Not counted: the capture hooks TransformerLens' blocks wire into themselves on their
        first forward pass and keep for the model's life (`_capture_hook_handles`), and the
        output-capturing hooks Transformers installs once per model (`run_with_cache` triggers
        them); see `is_transformers_capture_hook`.
        """
        return len(self._module_hooks())

    def _modules(self) -> list[torch.nn.Module]:
        modules = {id(module): module for module in self.bridge.modules()}
        original = getattr(self.bridge, "original_model", None)
        if original is not None:
            modules.update((id(module), module) for module in original.modules())
        return list(modules.values())

    def _module_hooks(self) -> dict[int, tuple[torch.nn.Module, str]]:
        """Every attached module hook not owned by the bridge: handle id -> (module, table).

        Torch numbers hook handles from one process-wide counter, so a handle id is unique.
        """
        modules = self._modules()
        own = {handle.id for module in modules
               for handle in getattr(module, "_capture_hook_handles", ())}
        found = {}
        for module in modules:
            for table in MODULE_HOOK_TABLES:
                for handle_id, hook in getattr(module, table, {}).items():
                    if handle_id not in own and not is_transformers_capture_hook(hook):
                        found[handle_id] = (module, table)
        return found

    def _hooks_added_since(self, before: set[int]) -> dict[int, tuple[torch.nn.Module, str]]:
        return {key: where for key, where in self._module_hooks().items() if key not in before}

    def _remove_hooks(self, hooks: dict[int, tuple[torch.nn.Module, str]]) -> None:
        for handle_id, (module, table) in hooks.items():
            getattr(module, table).pop(handle_id, None)
            for flags in HOOK_FLAG_TABLES.get(table, ()):
                getattr(module, flags, {}).pop(handle_id, None)


def default_device() -> str:
    """The default device: "cuda" when a GPU is available, else "cpu"."""
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
    """Whether HF_HUB_OFFLINE is set to a true value."""
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


def default_model_name() -> str | None:
    """GPT-2 small when it can load without a download, else the demo model, else any that can
    (the dashboard's first choice, and the API's model when a request names none)."""
    for key in ("gpt2", "demo"):
        if is_available(MODEL_REGISTRY[key]):
            return key
    return next((spec.key for spec in available_models()), None)


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


def read_config(config_file: Path, where: str) -> dict:
    """The parsed config.json, or a clear error saying what is wrong with it."""
    try:
        config = json.loads(Path(config_file).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ModelUnavailableError(
            f"The config.json of {where} is not text (it is damaged). Save the model again with "
            "`model.save_pretrained(folder)`.") from error
    except ValueError as error:
        raise ModelUnavailableError(
            f"The config.json of {where} is not valid JSON ({error}). Fix the file or save the "
            "model again with `model.save_pretrained(folder)`.") from error
    if not isinstance(config, dict):
        raise ModelUnavailableError(
            f"The config.json of {where} holds no settings (a JSON object was expected).")
    return config


def check_model_type(config: dict, where: str) -> None:
    """Refuse a config whose model type transformers does not know, in plain words."""
    from transformers import CONFIG_MAPPING

    kind = config.get("model_type")
    if kind not in CONFIG_MAPPING:
        raise ModelUnavailableError(
            f"The config.json of {where} names model type {kind!r}, which this version of "
            "transformers does not know. Use a causal language model that TransformerLens "
            "supports (model_type 'gpt2', 'gpt_neo', 'gpt_neox', 'llama', ...).")


def fetch_hub_config(repo_id: str) -> dict:
    """config.json of a Hub model: one small file (from the cache when offline), no weights."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        path = hf_hub_download(repo_id, "config.json")
    except RepositoryNotFoundError as error:
        raise ModelUnavailableError(
            f"There is no model {repo_id!r} on the Hugging Face Hub (or it is private). Check "
            "the id, e.g. 'EleutherAI/pythia-70m'.") from error
    except EntryNotFoundError as error:
        raise ModelUnavailableError(
            f"{repo_id} on the Hugging Face Hub has no config.json, so it is not a model "
            "transformers can load.") from error
    except (OSError, ValueError) as error:  # offline and uncached, timeouts, bad ids
        raise ModelUnavailableError(
            f"Could not read the config of {repo_id} from the Hugging Face Hub: "
            f"{first_line(error)} Connect to the internet once, or use a local folder or the "
            "demo model.") from error
    return read_config(Path(path), repo_id)


def estimate_params(config: dict) -> int | None:
    """Parameter count implied by a causal-LM config (GPT-2, GPT-NeoX/Pythia, GPT-Neo,
    Llama/Mistral/Qwen2), so a model too large for the machine is refused before any download.
    None when the config does not say enough.
    """
    kind = config.get("model_type")
    get = config.get
    if kind == "gpt2" or (kind is None and "n_embd" in config):
        d, layers, vocab = get("n_embd", 768), get("n_layer", 12), get("vocab_size", 50257)
        inner = get("n_inner") or 4 * d
        per_layer = (4 * d * d + 4 * d) + (2 * d * inner + inner + d) + 4 * d
        return layers * per_layer + vocab * d + get("n_positions", 1024) * d + 2 * d
    if kind == "gpt_neox":
        d, layers, vocab = get("hidden_size", 6144), get("num_hidden_layers", 44), get("vocab_size", 50432)
        inner = get("intermediate_size") or 4 * d
        per_layer = (4 * d * d + 4 * d) + (2 * d * inner + inner + d) + 4 * d
        heads = 1 if get("tie_word_embeddings", False) else 2
        return layers * per_layer + heads * vocab * d + 2 * d
    if kind == "gpt_neo":
        d, layers, vocab = get("hidden_size", 2048), get("num_layers", 24), get("vocab_size", 50257)
        inner = get("intermediate_size") or 4 * d
        per_layer = (4 * d * d + d) + (2 * d * inner + inner + d) + 4 * d
        return layers * per_layer + vocab * d + get("max_position_embeddings", 2048) * d + 2 * d
    if kind in ("llama", "mistral", "qwen2"):
        d, layers, vocab = get("hidden_size", 4096), get("num_hidden_layers", 32), get("vocab_size", 32000)
        heads = get("num_attention_heads", 32)
        kv_heads = get("num_key_value_heads") or heads
        head_dim = get("head_dim") or d // heads
        inner = get("intermediate_size", 11008)
        q_and_o, k_and_v = 2 * d * heads * head_dim, 2 * d * kv_heads * head_dim
        biases = 0
        if kind == "qwen2":
            biases = (heads + 2 * kv_heads) * head_dim
        elif get("attention_bias", False):
            biases = (heads + 2 * kv_heads) * head_dim + d
        mlp = 3 * d * inner + (2 * inner + d if get("mlp_bias", False) else 0)
        per_layer = q_and_o + k_and_v + biases + mlp + 2 * d
        unembed = 0 if get("tie_word_embeddings", False) else vocab * d
        return layers * per_layer + vocab * d + unembed + d
    d = get("hidden_size") or get("d_model")
    layers = get("num_hidden_layers") or get("num_layers") or get("n_layers")
    vocab = get("vocab_size")
    if d and layers and vocab:  # a rough transformer count: 12 d^2 per layer plus embeddings
        return int(12 * layers * d * d + vocab * d)
    return None


def check_memory(n_params: int | None, label: str) -> None:
    """Refuse to start a load that can't fit, instead of letting the machine swap or die."""
    if not n_params:
        return
    needed = n_params * 4 * 1.5
    available = psutil.virtual_memory().available
    if needed > available:
        raise ModelUnavailableError(
            f"{label} has about {n_params / 1e6:,.0f}M parameters and needs about "
            f"{needed / 1e9:.1f} GB of free memory to load in float32, and only "
            f"{available / 1e9:.1f} GB is free. Choose a smaller model, or close other programs.")


@dataclass(frozen=True)
class LoadPlan:
    """A model resolved and checked, not yet loaded: what it is and what it will cost."""

    name: str
    source: str
    label: str
    spec: ModelSpec | None
    n_params: int | None
    dtype: torch.dtype

    @property
    def is_folder(self) -> bool:
        return Path(self.source).is_absolute()

    @property
    def needs_download(self) -> bool:
        """A Hub model the local cache does not hold yet."""
        return not self.is_folder and not hub_cached(self.source)

    @property
    def n_bytes(self) -> int | None:
        """Bytes its weights will take in memory (None when the size is unknown)."""
        if not self.n_params:
            return None
        return self.n_params * torch.empty((), dtype=self.dtype).element_size()


def display_name(name_or_path: str) -> str:
    """How a model is named in titles, captions and explanations: a local folder by its last
    part (a server's paths are nobody's business, and a whole path is wider than any chart), a
    registry key or Hub id as it is."""
    text = str(name_or_path).strip()
    path = Path(text)
    return path.name or text if path.is_absolute() else text


def plan_load(name_or_path: str, dtype: torch.dtype = torch.float32) -> LoadPlan:
    """Resolve a model and run every check that needs no weights: the folder's files, its
    config, and whether its parameter count fits in memory (for Hub ids from config.json
    alone, before any download starts).
    """
    source, spec = resolve_source(name_or_path)
    label = spec.label if spec else source  # errors name the folder they are about
    if Path(source).is_absolute():
        check_local_folder(Path(source))
        config = read_config(Path(source) / "config.json", label)
        check_model_type(config, label)
        n_params = spec.n_params if spec else estimate_params(config)
    else:
        if not hub_cached(source) and not hub_reachable():
            raise ModelUnavailableError(
                f"{label} ({source}) is not in the local Hugging Face cache and the Hugging Face "
                "Hub can't be reached (offline, or HF_HUB_OFFLINE=1). Connect once to download "
                "it, or point the app at a local folder holding the model, or use the bundled "
                "demo model.")
        n_params = spec.n_params if spec else estimate_params(fetch_hub_config(source))
    check_memory(n_params, label)
    return LoadPlan(name=name_or_path.strip(), source=source, label=label, spec=spec,
                    n_params=n_params, dtype=dtype)


def load_model(name_or_path: str, device: str | None = None,
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model by registry key, local Hugging Face folder, or Hugging Face id.

    Raises `ModelUnavailableError` with what to do when the model is missing offline, the folder
    is not a model, or memory is short. Parameters are frozen: analyses take gradients with
    respect to activations, never weights.
    """
    return load_planned(plan_load(name_or_path, dtype), device)


def load_planned(plan: LoadPlan, device: str | None = None) -> LoadedModel:
    """Load a model that `plan_load` checked, onto `device` (default: CUDA when available)."""
    from interp.heap import release_freed_memory

    bridge, n_params = boot_bridge(plan, device or default_device())
    # Loading GPT-2 small allocates and drops ~150 MB on the way (measured peak over held);
    # ~30 MB of it stays in malloc's heap unless handed back now.
    release_freed_memory()
    return LoadedModel(bridge, model_info(bridge, n_params, plan))


def boot_bridge(plan: LoadPlan, device: str):
    """Boot a TransformerBridge with eager attention on `device`, turning library failures into
    our errors.

    Returns the bridge and the parameter count of the Hugging Face model (the bridge holds split
    q/k/v copies of GPT-2's fused weights, so counting its parameters would overstate the size).
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(plan.source, attn_implementation="eager",
                                                        dtype=plan.dtype)
        n_params = sum(p.numel() for p in hf_model.parameters())
        bridge = TransformerBridge.boot_transformers(plan.source, hf_model=hf_model,
                                                     device=device, dtype=plan.dtype)
        # boot_transformers only records the device for a model passed in: move it ourselves.
        bridge.to(device, print_details=False)
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise ModelUnavailableError(
            f"Ran out of memory while loading {plan.label}. Choose a smaller model.") from error
    except Exception as error:  # transformers and TransformerLens raise many kinds
        raise ModelUnavailableError(load_failure_message(plan, error)) from error
    if bridge.tokenizer is None:
        raise ModelUnavailableError(f"{plan.label} has no tokenizer; add tokenizer files to its folder.")
    bridge.eval()
    for parameter in bridge.parameters():
        parameter.requires_grad_(False)
    return bridge, n_params


def unreadable_weights(error: BaseException | None) -> bool:
    """True for a weights file that is damaged or not plain tensors (never load those unsafely)."""
    import pickle

    from safetensors import SafetensorError

    while error is not None:
        text = str(error)
        if (isinstance(error, (SafetensorError, pickle.UnpicklingError))
                or "weights_only" in text or "PytorchStreamReader failed" in text
                or raised_reading_weights(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


# Random bytes in a pickled .bin fail inside torch's reader with whatever the bytes happen to
# trip (IndexError "pop from empty list", KeyError, UnicodeDecodeError ...: measured, ~1 file in
# 6), so where the error was raised decides, not its type.
WEIGHT_READER_FILES = ("torch/serialization.py", "torch/_weights_only_unpickler.py")


def raised_reading_weights(error: BaseException) -> bool:
    """True when `error` was raised inside torch's weights-file reader."""
    frames = traceback.extract_tb(error.__traceback__)
    return any(frame.filename.replace("\\", "/").endswith(WEIGHT_READER_FILES) for frame in frames)


def load_failure_message(plan: LoadPlan, error: BaseException) -> str:
    """Our words for a failed load: what is wrong and what to do, never PyTorch's advice."""
    named = plan.label if plan.label == plan.source else f"{plan.label} ({plan.source})"
    if unreadable_weights(error):
        return (f"The weights of {named} could not be read: the file is damaged or incomplete, "
                "or it is not a plain weights file (a pickled .bin that holds code is refused on "
                "purpose). Download or save the model again, preferably as .safetensors.")
    if plan.is_folder:
        return (f"Could not load {named}: {first_line(error)} The folder must hold a causal "
                "language model that TransformerLens supports (GPT-2, GPT-Neo, Pythia, ...), "
                "saved with `save_pretrained`.")
    return (f"Could not load {named}: {first_line(error)} Hugging Face ids must name causal "
            "language models that TransformerLens supports (GPT-2, GPT-Neo, Pythia, ...); if "
            "you are offline, the model must already be in the Hugging Face cache.")


def weights_device(bridge) -> torch.device:
    """The one device that holds every weight of `bridge` (not the device that was asked for)."""
    devices = {tensor.device for tensor in [*bridge.parameters(), *bridge.buffers()]}
    if len(devices) != 1:
        raise ModelUnavailableError(
            "The model's weights are spread over several devices "
            f"({', '.join(sorted(map(str, devices)))}); load it onto one device.")
    return devices.pop()


def model_info(bridge, n_params: int, plan: LoadPlan) -> ModelInfo:
    """The `ModelInfo` of a loaded bridge: its shape, label, source and parameter count."""
    cfg = bridge.cfg
    architecture = type(bridge.original_model).__name__
    return ModelInfo(
        name=plan.name, label=display_name(plan.label), source=plan.source, architecture=architecture,
        n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model, d_head=cfg.d_head,
        d_mlp=cfg.d_mlp or 4 * cfg.d_model, d_vocab=cfg.d_vocab, n_ctx=cfg.n_ctx,
        n_params=n_params, device=str(weights_device(bridge)),
        dtype=str(plan.dtype).replace("torch.", ""), is_demo=bool(plan.spec and plan.spec.is_demo))


def first_line(error: BaseException) -> str:
    """The first line of an error's message, ending with a full stop."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).rstrip(".") + "."
