"""Holding models within a memory budget, so a small server never loads more than it can keep.

Every model kept in memory (language models, and classifiers such as the toxicity model)
counts the bytes of its weights against one budget in bytes; a load that would go over it is
refused with what it needs, what is held, and which setting to change. A model's bytes are
given back when the object is freed (a weakref finalizer), not when a cache forgets it: a
session may still hold a model that the cache has dropped, and its memory is still in use.
"""

from __future__ import annotations

import collections
import gc
import itertools
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError, ModelUnavailableError
from interp.settings import Settings, env_name

BUDGET_SETTING = env_name("memory_budget_gb")
MAX_MODELS_SETTING = env_name("max_models")
DEFAULT_BUDGET_GB = Settings.memory_budget_gb
DEFAULT_MAX_LANGUAGE_MODELS = Settings.max_models
GB = 1e9


def memory_budget_bytes(secrets: Mapping | None = None) -> int:
    """`WORKBENCH_MEMORY_BUDGET_GB` (see `interp.settings`), in bytes."""
    return int(Settings.from_env(secrets).memory_budget_gb * GB)


def max_language_models(secrets: Mapping | None = None) -> int:
    """`WORKBENCH_MAX_MODELS` (see `interp.settings`)."""
    return Settings.from_env(secrets).max_models


def module_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the weights and buffers of `modules`, each storage counted once (tied and
    shared tensors, and a bridge wrapping its Hugging Face model, share storage)."""
    storages = {}
    for module in modules:
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            storage = tensor.untyped_storage()
            storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def loaded_model_bytes(model) -> int:
    """Bytes a `LoadedModel` holds: its bridge and the Hugging Face model inside it."""
    original = getattr(model.bridge, "original_model", None)
    return module_bytes(model.bridge, *([original] if original is not None else []))


@dataclass(frozen=True)
class HeldModel:
    """One model in memory, as the budget counts it."""

    key: str
    label: str
    kind: str
    n_bytes: int

    def describe(self) -> str:
        return f"{self.label} ({self.kind}, {self.n_bytes / GB:.2f} GB)"


class MemoryBudget:
    """Bytes of every model held in this process, against one limit."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = int(limit_bytes)
        self._held: dict[int, HeldModel] = {}
        self._freed: collections.deque[int] = collections.deque()  # filled by finalizers
        self._tokens = itertools.count()
        self._lock = threading.Lock()

    def held(self) -> tuple[HeldModel, ...]:
        with self._lock:
            self._forget_freed()
            return tuple(self._held.values())

    def used_bytes(self) -> int:
        return sum(model.n_bytes for model in self.held())

    def check_room(self, label: str, n_bytes: int | None) -> None:
        """Raise `ModelUnavailableError` unless `n_bytes` more fit in the budget."""
        if not n_bytes:
            return
        held = self.held()
        used = sum(model.n_bytes for model in held)
        if used + n_bytes <= self.limit_bytes:
            return
        holding = ("; held now: " + ", ".join(m.describe() for m in held)) if held else ""
        raise ModelUnavailableError(
            f"{label} needs about {n_bytes / GB:.2f} GB, and the memory budget is "
            f"{self.limit_bytes / GB:.2f} GB with {used / GB:.2f} GB in use{holding}. Choose a "
            f"smaller model, or, if this machine has the memory, raise {BUDGET_SETTING} "
            "(an environment variable or a Streamlit secret, in GB).")

    def track(self, obj, *, key: str, label: str, kind: str, n_bytes: int) -> HeldModel:
        """Count `obj` against the budget until it is freed."""
        held = HeldModel(key=key, label=label, kind=kind, n_bytes=int(n_bytes))
        with self._lock:
            token = next(self._tokens)
            self._held[token] = held
        # The finalizer may run inside any allocation, even while `_lock` is held: it only
        # appends to a deque, and the next reader drops the entry.
        weakref.finalize(obj, self._freed.append, token)
        return held

    def _forget_freed(self) -> None:
        while self._freed:
            self._held.pop(self._freed.popleft(), None)


_LOADS: collections.Counter[str] = collections.Counter()  # every cache's loads, by name
_LOADS_LOCK = threading.Lock()


class LanguageModelCache:
    """The shared language models: at most `max_models`, least recently used dropped first,
    every one counted against `budget`.

    One load runs at a time, so two loads never both pass the budget check; asking for a model
    that is already held never waits for a load. A Hub model not yet in the local cache is
    downloaded first (`fetch`, with progress), outside that one-at-a-time section: another
    session can load the demo model meanwhile.
    """

    def __init__(self, budget: MemoryBudget, max_models: int,
                 plan: Callable | None = None, load: Callable | None = None,
                 measure: Callable = loaded_model_bytes, fetch: Callable | None = None):
        from interp.downloads import download_model
        from interp.models import load_planned, plan_load

        if max_models < 1:
            raise InvalidOptionError(f"{MAX_MODELS_SETTING} must be at least 1, not {max_models}.")
        self.budget = budget
        self.max_models = max_models
        self._plan = plan or plan_load
        self._load = load or load_planned
        self._fetch = fetch or download_model
        self._measure = measure
        self._models: collections.OrderedDict[str, object] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    @staticmethod
    def load_counts() -> dict[str, int]:
        """How many times each name was loaded in this process, by any cache: 1 while one copy
        serves every session and the API; more after it was dropped to make room and asked for
        again, or if two caches each held their own copy."""
        with _LOADS_LOCK:
            return dict(_LOADS)

    def get(self, name_or_path: str, progress: Callable[[int, int], None] | None = None):
        """The held model for this name, loading it (within the budget) if needed;
        `progress(bytes_done, bytes_total)` follows a download, when one is needed."""
        key = name_or_path.strip()
        held = self._held(key)
        if held is not None:
            return held
        plan = self._plan(key)
        if plan.needs_download:
            self._fetch(plan.source, progress)
        with self._loading:
            held = self._held(key)  # loaded by another session while this one waited
            if held is not None:
                return held
            self._make_room(plan.label, plan.n_bytes)
            model = self._load(plan)
            self.budget.track(model, key=key, label=plan.label, kind="language model",
                              n_bytes=self._measure(model))
            with self._lock:
                self._models[key] = model
            with _LOADS_LOCK:
                _LOADS[key] += 1
            return model

    def _held(self, key: str):
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        return None

    def _make_room(self, label: str, n_bytes: int | None) -> None:
        needed = n_bytes or 0
        if needed > self.budget.limit_bytes:  # dropping other models would not help
            self.budget.check_room(label, needed)
        with self._lock:
            while len(self._models) >= self.max_models:
                self._models.popitem(last=False)
        gc.collect()  # models nobody else holds give their bytes back now
        while self.budget.used_bytes() + needed > self.budget.limit_bytes:
            with self._lock:
                if not self._models:
                    break
                self._models.popitem(last=False)
            gc.collect()
        self.budget.check_room(label, needed)
