"""The memory budget: every held model counts its bytes until it is freed, a load that would
not fit (runtime + held models + the new one + the analyses' reserve) is refused with that sum
and what to change, and at most `max_models` language models are kept.

Most tests use stand-in models of known size (no Streamlit, no real loads), the eviction tests
counting the models' bytes alone (no runtime, no reserve); one loads the tiny model and checks
the bytes counted against transformers' own `get_memory_footprint()`.
"""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from interp.errors import InvalidOptionError, ModelUnavailableError
from interp.memory_budget import (
    BUDGET_SETTING,
    MAX_MODELS_SETTING,
    RUNTIME_BYTES,
    WORKING_MEMORY_FACTOR,
    LanguageModelCache,
    MemoryBudget,
    loaded_model_bytes,
    max_language_models,
    memory_budget_bytes,
)

GB = 10**9


class StandIn:
    """A model of a stated size (weakref-able, so the budget can see it freed)."""

    def __init__(self, name: str, n_bytes: int):
        self.name, self.n_bytes = name, n_bytes


def stand_in_cache(sizes_gb: dict[str, float], budget_gb: float, max_models: int = 2,
                   runtime_gb: float = 0.0, working_factor: float = 0.0):
    """A cache of stand-ins; the runtime and the analyses' reserve default to nothing, so
    that these tests count the models' own bytes alone."""
    loads: list[str] = []

    def plan(name):
        if name not in sizes_gb:
            raise ModelUnavailableError(f"no model {name}")
        return SimpleNamespace(name=name, label=name.upper(), n_bytes=int(sizes_gb[name] * GB),
                               needs_download=False)

    def load(planned):
        loads.append(planned.name)
        return StandIn(planned.name, planned.n_bytes)

    budget = MemoryBudget(int(budget_gb * GB), runtime_bytes=int(runtime_gb * GB),
                          working_factor=working_factor)
    cache = LanguageModelCache(budget, max_models, plan=plan, load=load,
                               measure=lambda model: model.n_bytes)
    return cache, loads


def test_held_models_count_their_bytes_and_a_second_ask_reuses_the_first_load():
    cache, loads = stand_in_cache({"a": 0.5, "b": 1.0}, budget_gb=2.7)
    first = cache.get("a")
    assert cache.get(" a ") is first and loads == ["a"]
    cache.get("b")
    assert cache.budget.used_bytes() == int(0.5 * GB) + int(1.0 * GB)  # 0.5 GB + 1 GB by hand


def test_a_load_over_the_budget_says_what_it_needs_what_is_held_and_what_to_change():
    cache, loads = stand_in_cache({"small": 0.5, "medium": 1.4, "large": 3.1}, budget_gb=2.7)
    held = cache.get("medium")
    with pytest.raises(ModelUnavailableError) as error:
        cache.get("large")
    message = str(error.value)
    assert "LARGE: it needs about 3.10 GB" in message and "budget of 2.70 GB" in message
    assert BUDGET_SETTING in message
    assert loads == ["medium"] and cache.names() == ["medium"]  # nothing dropped in vain
    assert held is cache.get("medium")


def test_the_message_lists_models_a_session_still_holds_after_the_cache_dropped_them():
    cache, loads = stand_in_cache({"a": 1.0, "b": 0.4, "c": 1.0}, budget_gb=1.5, max_models=2)
    kept_by_a_session = cache.get("a")
    cache.get("b")
    with pytest.raises(ModelUnavailableError) as error:
        cache.get("c")  # the cache drops a and b, but a session still holds a: 1 + 1 > 1.5
    message = str(error.value)
    assert "A (language model, 1.00 GB)" in message and "B (language" not in message
    assert kept_by_a_session.name == "a"


def test_a_dropped_model_gives_its_bytes_back_once_nobody_holds_it():
    cache, loads = stand_in_cache({"a": 1.0, "b": 1.0, "c": 1.0}, budget_gb=2.5, max_models=2)
    cache.get("a"), cache.get("b")
    cache.get("c")  # over the cap of two language models: a, the least recently used, goes
    gc.collect()
    assert cache.names() == ["b", "c"]
    assert sorted(m.key for m in cache.budget.held()) == ["b", "c"]
    assert cache.budget.used_bytes() == 2 * GB


def test_the_least_recently_used_model_is_the_one_dropped():
    cache, loads = stand_in_cache({"a": 0.1, "b": 0.1, "c": 0.1}, budget_gb=2.7, max_models=2)
    cache.get("a"), cache.get("b"), cache.get("a")
    cache.get("c")
    assert cache.names() == ["a", "c"]


def test_a_failed_load_is_not_kept_and_other_held_models_register_too():
    cache, loads = stand_in_cache({"a": 0.5}, budget_gb=1.0)
    with pytest.raises(ModelUnavailableError):
        cache.get("missing")
    assert cache.names() == []
    classifier = StandIn("toxicity", int(0.6 * GB))
    cache.budget.track(classifier, key="toxicity", label="Toxicity classifier",
                       kind="classifier", n_bytes=classifier.n_bytes)
    with pytest.raises(ModelUnavailableError, match="Toxicity classifier"):
        cache.get("a")  # 0.6 + 0.5 > 1.0
    del classifier
    gc.collect()
    assert cache.get("a").name == "a"


def test_settings_come_from_the_environment_then_secrets_then_the_default(monkeypatch):
    monkeypatch.delenv(BUDGET_SETTING, raising=False)
    monkeypatch.delenv(MAX_MODELS_SETTING, raising=False)
    assert memory_budget_bytes() == int(2.7 * GB)
    assert max_language_models() == 2
    assert memory_budget_bytes({BUDGET_SETTING: 8}) == 8 * GB
    assert max_language_models({MAX_MODELS_SETTING: "3"}) == 3
    monkeypatch.setenv(BUDGET_SETTING, "1.5")
    monkeypatch.setenv(MAX_MODELS_SETTING, "1")
    assert memory_budget_bytes({BUDGET_SETTING: 8}) == int(1.5 * GB)
    assert max_language_models() == 1
    monkeypatch.setenv(BUDGET_SETTING, "lots")
    with pytest.raises(InvalidOptionError, match=BUDGET_SETTING):
        memory_budget_bytes()
    monkeypatch.setenv(BUDGET_SETTING, "1.5")
    monkeypatch.setenv(MAX_MODELS_SETTING, "1.5")
    with pytest.raises(InvalidOptionError, match=MAX_MODELS_SETTING):
        max_language_models()


def test_a_real_model_counts_what_its_weights_occupy(tiny_model_dir, tiny_model):
    """Peer: transformers' `get_memory_footprint()` of the same folder loaded plainly, plus the
    one buffer the bridge adds (a zero unembedding bias, d_vocab float32 values). The bridge's
    split q/k/v are views of GPT-2's fused weights and cost nothing more."""
    from transformers import GPT2LMHeadModel

    cache = LanguageModelCache(MemoryBudget(int(2.7 * GB)), max_models=2)
    model = cache.get(str(tiny_model_dir))
    plain = GPT2LMHeadModel.from_pretrained(tiny_model_dir).get_memory_footprint()
    expected = plain + 4 * model.info.d_vocab
    assert cache.budget.used_bytes() == loaded_model_bytes(model) == expected
    assert cache.get(str(tiny_model_dir)) is model


def test_a_model_load_gives_freed_heap_memory_back(monkeypatch, tiny_model_dir):
    """What loading allocated and dropped is returned to the system at once, not only after
    the next analysis (`interp.heap.release_freed_memory`)."""
    import interp.heap
    from interp.models import load_model

    calls = []
    monkeypatch.setattr(interp.heap, "release_freed_memory", lambda: calls.append(1) or True)
    load_model(str(tiny_model_dir), device="cpu")
    assert calls == [1]


def test_a_second_model_is_refused_when_runtime_models_and_reserve_would_not_fit():
    """Reference: the sum by hand. Runtime 0.6 GB, reserve 2 x the largest language model:
    the first 0.5 GB model needs 0.6 + 0.5 + 1.0 = 2.1 GB of 2.5; a second needs
    0.6 + 0.5 + 0.5 + 1.0 = 2.6 GB, which the weights alone (1.0 GB) would have let in."""
    cache, loads = stand_in_cache({"a": 0.5, "b": 0.5}, budget_gb=2.5, runtime_gb=0.6,
                                  working_factor=2.0)
    first = cache.get("a")
    with pytest.raises(ModelUnavailableError) as error:
        cache.get("b")
    message = str(error.value)
    for part in ("Not enough memory for B", "needs about 0.50 GB", "runtime (0.60 GB)",
                 "models held (0.50 GB: A (language model, 0.50 GB))",
                 "2 x the largest language model, 1.00 GB", "would need 2.60 GB",
                 "budget of 2.50 GB", "Choose a smaller model", BUDGET_SETTING):
        assert part in message, part
    assert loads == ["a"] and cache.get("a") is first  # the first one is kept, not dropped


def test_the_reserve_follows_the_largest_language_model_not_a_classifier():
    """Reference: by hand, runtime 0.6 + models 0.5 + 0.4 + reserve 2 x 0.5 = 2.5 GB, which
    fits exactly; a classifier counts its bytes but no reserve of its own."""
    budget = MemoryBudget(int(2.5 * GB), runtime_bytes=int(0.6 * GB), working_factor=2.0)
    model = StandIn("lm", int(0.5 * GB))
    budget.track(model, key="lm", label="LM", kind="language model", n_bytes=model.n_bytes)
    assert budget.fits(int(0.4 * GB), kind="toxicity classifier")
    assert not budget.fits(int(0.4 * GB) + 1, kind="toxicity classifier")
    # A larger language model raises the reserve to 2 x 0.6: 0.6 + 0.5 + 0.6 + 1.2 = 2.9 GB.
    need = budget.need(int(0.6 * GB))
    assert need.total_bytes == int(0.6 * GB) + int(0.5 * GB) + int(0.6 * GB) + int(1.2 * GB)
    assert not budget.fits(int(0.6 * GB))


def test_the_default_budget_keeps_gpt2_small_with_the_classifier_and_refuses_a_second():
    """The defaults (2.7 GB, the measured runtime and reserve) on GPT-2 small's real sizes:
    124,439,808 float32 parameters (497.8 MB, from its model card's count) and Detoxify's
    BERT-base, 109,486,854 float32 parameters (437.9 MB). Reference: the sums by hand."""
    gpt2, bert = 124_439_808 * 4, 109_486_854 * 4
    budget = MemoryBudget(int(2.7 * GB))
    first = StandIn("gpt2", gpt2)
    budget.track(first, key="gpt2", label="GPT-2 small", kind="language model", n_bytes=gpt2)
    expected = RUNTIME_BYTES + gpt2 + bert + int(WORKING_MEMORY_FACTOR * gpt2)
    assert budget.need(bert, kind="toxicity classifier").total_bytes == expected
    assert expected <= 2.7 * GB
    budget.check_room("Detoxify original", bert, kind="toxicity classifier")
    with pytest.raises(ModelUnavailableError, match="Not enough memory for GPT-2 small"):
        budget.check_room("GPT-2 small", gpt2)
