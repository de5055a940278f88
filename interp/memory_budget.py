"""Holding models within a memory budget, so a small server never loads more than it can keep.

A load is accepted only if what the process would then need fits the budget: the runtime
itself (`RUNTIME_BYTES`), the bytes of every model held (language models, and classifiers such
as the toxicity model), the new model's, and a reserve for the analyses' working memory
(`WORKING_MEMORY_FACTOR` x the largest language model's bytes). Otherwise it is refused with
that sum, what is held, and which setting to change. A model's bytes are given back when the
object is freed (a weakref finalizer), not when a cache forgets it: a session may still hold a
model that the cache has dropped, and its memory is still in use.
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
LANGUAGE_MODEL = "language model"
# What the app's process holds before any model: Python, torch, transformers, TransformerLens,
# Streamlit and the API. Measured by the deploy check (`python -m bench deploy`): the server's
# peak on the Home page with the demo model was 641 MB, and 688 MB with GPT-2 small minus its
# 498 MB of weights (2026-12-02). A constant, not the process's RSS, so that a check gives the
# same answer however much freed memory the heap happens to hold.
RUNTIME_BYTES = int(0.65 * GB)
# The analyses' working memory above what is held, per byte of the largest language model.
# Measured by the deploy check on GPT-2 small (498 MB): most pages under 0.35 GB (0.7x), the
# SAE page 0.78 GB (1.6x) and the Circuits page 1.25 GB (2.5x, being cut) on 2026-12-02. At
# 2.2 the default 2.7 GB budget keeps GPT-2 small with the BERT-base toxicity classifier
# (2.68 GB) and refuses a second GPT-2 small (2.74 GB; the deploy check measured 3.4 GB with two).
WORKING_MEMORY_FACTOR = 2.2


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


@dataclass(frozen=True)
class MemoryNeed:
    """What the process would need with one more model: the runtime, the models held, the new
    model, and the analyses' reserve (`factor` x the largest language model's bytes)."""

    runtime_bytes: int
    held_bytes: int
    new_bytes: int
    reserve_bytes: int
    factor: float

    @property
    def total_bytes(self) -> int:
        return self.runtime_bytes + self.held_bytes + self.new_bytes + self.reserve_bytes


class MemoryBudget:
    """Bytes of every model held in this process, plus the runtime and the analyses' reserve,
    against one limit (`runtime_bytes` and `working_factor` default to the measured
    `RUNTIME_BYTES` and `WORKING_MEMORY_FACTOR`)."""

    def __init__(self, limit_bytes: int, runtime_bytes: int = RUNTIME_BYTES,
                 working_factor: float = WORKING_MEMORY_FACTOR):
        self.limit_bytes = int(limit_bytes)
        self.runtime_bytes = int(runtime_bytes)
        self.working_factor = float(working_factor)
        self._held: dict[int, HeldModel] = {}
        self._freed: collections.deque[int] = collections.deque()  # filled by finalizers
        self._tokens = itertools.count()
        self._lock = threading.Lock()

    def held(self) -> tuple[HeldModel, ...]:
        with self._lock:
            self._forget_freed()
            return tuple(self._held.values())

    def used_bytes(self) -> int:
        """Bytes of the models held (weights and buffers), without the runtime or reserve."""
        return sum(model.n_bytes for model in self.held())

    def need(self, n_bytes: int, kind: str = LANGUAGE_MODEL,
             held: tuple[HeldModel, ...] | None = None) -> MemoryNeed:
        """What the process would need with a model of `n_bytes` and `kind` loaded beside
        `held` (default: the models held now)."""
        held = self.held() if held is None else held
        language_models = [m.n_bytes for m in held if m.kind == LANGUAGE_MODEL]
        if kind == LANGUAGE_MODEL:
            language_models.append(n_bytes)
        reserve = int(self.working_factor * max(language_models, default=0))
        return MemoryNeed(runtime_bytes=self.runtime_bytes,
                          held_bytes=sum(m.n_bytes for m in held), new_bytes=int(n_bytes),
                          reserve_bytes=reserve, factor=self.working_factor)

    def fits(self, n_bytes: int, kind: str = LANGUAGE_MODEL) -> bool:
        """Whether a model of `n_bytes` and `kind` fits beside the models held now."""
        return self.need(n_bytes, kind).total_bytes <= self.limit_bytes

    def check_room(self, label: str, n_bytes: int | None, kind: str = LANGUAGE_MODEL) -> None:
        """Raise `ModelUnavailableError` unless a model of `n_bytes` (None or 0: size unknown,
        not checked) fits beside the models held, the runtime and the analyses' reserve."""
        if not n_bytes:
            return
        held = self.held()
        need = self.need(n_bytes, kind, held)
        if need.total_bytes <= self.limit_bytes:
            return
        holding = (": " + ", ".join(m.describe() for m in held)) if held else ""
        raise ModelUnavailableError(
            f"Not enough memory for {label}: it needs about {n_bytes / GB:.2f} GB, and with the "
            f"app's runtime ({need.runtime_bytes / GB:.2f} GB), the models held "
            f"({need.held_bytes / GB:.2f} GB{holding}) and room for analyses "
            f"({need.factor:g} x the largest language model, {need.reserve_bytes / GB:.2f} GB) "
            f"the app would need {need.total_bytes / GB:.2f} GB, over the memory budget of "
            f"{self.limit_bytes / GB:.2f} GB. Choose a smaller model (or compare with one "
            f"model fewer), or, if this machine has the memory, raise {BUDGET_SETTING} "
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
            self.budget.track(model, key=key, label=plan.label, kind=LANGUAGE_MODEL,
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
        if not self.budget.need(needed, held=()).total_bytes <= self.budget.limit_bytes:
            self.budget.check_room(label, needed)  # dropping other models would not help
        dropped: list[tuple[str, weakref.ref]] = []  # least recently used first

        def drop_oldest() -> None:
            with self._lock:
                key, model = self._models.popitem(last=False)
            dropped.append((key, weakref.ref(model)))

        while len(self._models) >= self.max_models:
            drop_oldest()
        gc.collect()  # models nobody else holds give their bytes back now
        while needed and not self.budget.fits(needed) and self._models:  # 0: size unknown
            drop_oldest()
            gc.collect()
        try:
            self.budget.check_room(label, needed)
        except ModelUnavailableError:
            # Refused all the same: the models a session still holds go back into the cache,
            # so that asking for them again does not load a second copy.
            with self._lock:
                for key, ref in reversed(dropped):
                    model = ref()
                    if model is not None and key not in self._models:
                        self._models[key] = model
                        self._models.move_to_end(key, last=False)
            raise
