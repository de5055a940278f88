"""The concurrency contract of a shared `LoadedModel`: no nested hook blocks, a serialized
tokenizer, and `exclusive()` for libraries that register their own torch hooks.

Cross-thread hook isolation (a hook held by one thread never reaches another thread's forward
pass, and the control showing the leak is real on a bare bridge) is in test_thread_safety.py.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from interp.errors import LeftoverHooksError, NestedHookError
from interp.models import load_model

RESID = "blocks.1.hook_resid_pre"


def zero_residual(resid, hook):
    return torch.zeros_like(resid)


def test_nested_hooked_raises_and_leaves_the_outer_hooks_in_place(tiny_model):
    """Reference: a separate hooked run with the outer hook alone; the outer block's output
    after the refused inner blocks must equal it (and differ from the clean logits)."""
    tokens = tiny_model.to_tokens("The keys to the cabinet are")
    clean = tiny_model.logits(tokens)
    with tiny_model.hooked([(RESID, zero_residual)]) as bridge:
        with pytest.raises(NestedHookError, match="already open in this thread"):
            with tiny_model.hooked([("blocks.0.hook_resid_pre", zero_residual)]):
                pass
        with pytest.raises(NestedHookError):
            tiny_model.logits(tokens)
        with pytest.raises(NestedHookError):
            with tiny_model.exclusive():
                pass
        with torch.no_grad():
            still_hooked = bridge(tokens)
    assert not torch.allclose(still_hooked, clean)
    with tiny_model.hooked([(RESID, zero_residual)]) as bridge, torch.no_grad():
        assert torch.allclose(still_hooked, bridge(tokens), atol=1e-6)
    assert tiny_model.active_hook_count() == 0
    assert torch.allclose(tiny_model.logits(tokens), clean, atol=1e-6)


class BorrowChecker:
    """Stands in for a Rust tokenizer's borrow flag: using it from two threads at once raises
    "Already borrowed", as `tokenizers` does (its calls release the GIL; here a yield does)."""

    def __init__(self, backend):
        self._backend = backend
        self._inside = 0
        self._count_lock = threading.Lock()

    def __getattr__(self, name):
        value = getattr(self._backend, name)
        if not callable(value):
            return value

        def checked(*args, **kwargs):
            with self._count_lock:
                self._inside += 1
                clash = self._inside > 1
            try:
                if clash:
                    raise RuntimeError("Already borrowed")
                time.sleep(0)  # let the other thread run while this one is inside
                return value(*args, **kwargs)
            finally:
                with self._count_lock:
                    self._inside -= 1

        return checked


def test_two_threads_tokenizing_at_once_1000_times_never_fail(tiny_model_dir):
    """Reference: each thread's results equal the same calls made alone, before the threads."""
    model = load_model(str(tiny_model_dir), device="cpu")
    raw = model.bridge.tokenizer
    raw._tokenizer = BorrowChecker(raw._tokenizer)
    texts = {"a": "When Mary and John went to the store, John gave a drink to",
             "b": "The keys to the cabinet are on the table 🙂"}

    def calls(text):
        return (model.to_tokens(text).tolist(), model.encode(text),
                model.decode(model.token_ids(text)), model.tokenizer(text)["input_ids"])

    expected = {name: calls(text) for name, text in texts.items()}
    start = threading.Barrier(2)
    failures: list[str] = []

    def worker(name):
        start.wait()
        for _ in range(1000):
            try:
                if calls(texts[name]) != expected[name]:
                    failures.append(f"{name}: different tokens")
            except Exception as error:  # "Already borrowed" is what must never happen
                failures.append(f"{name}: {error!r}")

    threads = [threading.Thread(target=worker, args=(name,)) for name in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    assert expected["a"][2] == texts["a"] and expected["b"][2] == texts["b"]


def test_encode_offsets_cover_the_text(tiny_model):
    """Invariant: the character spans, read back from the text, rebuild it exactly."""
    text = "Mary gave the keys to John"
    encoding = tiny_model.encode(text)
    assert "".join(text[start:end] for start, end in encoding.offsets).replace(" ", "") == \
        text.replace(" ", "")
    assert list(encoding.ids) == tiny_model.token_ids(text)


def add_one(module, args, output):
    return output + 1.0


def test_exclusive_counts_a_captum_style_module_hook_and_ends_with_none(tiny_model):
    """Invariant: a forward hook adding 1 to an MLP's output changes the logits while present;
    the count is 1 while it is attached and 0 after `handle.remove()`."""
    tokens = tiny_model.to_tokens("Mary and John")
    clean = tiny_model.logits(tokens)
    with tiny_model.exclusive() as bridge, torch.no_grad():
        mlp = bridge.original_model.transformer.h[0].mlp
        handle = mlp.register_forward_hook(add_one)
        assert tiny_model.active_hook_count() == 1
        assert not torch.allclose(bridge(tokens), clean)
        backward = bridge.blocks[1].register_full_backward_hook(lambda *args: None)
        pre = bridge.blocks[1].ln1.register_forward_pre_hook(lambda *args: None)
        assert tiny_model.active_hook_count() == 3
        for each in (handle, backward, pre):
            each.remove()
        assert tiny_model.active_hook_count() == 0
    assert tiny_model.active_hook_count() == 0
    assert torch.allclose(tiny_model.logits(tokens), clean, atol=1e-6)


def test_exclusive_removes_hooks_left_behind_and_says_so(tiny_model):
    tokens = tiny_model.to_tokens("Mary and John")
    clean = tiny_model.logits(tokens)
    with pytest.raises(LeftoverHooksError, match="1 module hook"):
        with tiny_model.exclusive() as bridge:
            bridge.original_model.transformer.h[1].attn.register_forward_hook(add_one)
    assert tiny_model.active_hook_count() == 0
    assert torch.allclose(tiny_model.logits(tokens), clean, atol=1e-6)


def test_a_failing_exclusive_block_keeps_its_error_and_loses_its_hooks(tiny_model):
    with pytest.raises(KeyError):
        with tiny_model.exclusive() as bridge:
            bridge.blocks[0].register_forward_hook(add_one)
            raise KeyError("the library failed")
    assert tiny_model.active_hook_count() == 0
    assert tiny_model.lock.acquire(blocking=False)
    tiny_model.lock.release()


def test_hooked_counts_its_hook_points_while_open(tiny_model):
    with tiny_model.hooked([(RESID, zero_residual), ("blocks.0.hook_resid_pre", zero_residual)]):
        assert tiny_model.active_hook_count() == 2
    assert tiny_model.active_hook_count() == 0


def transformers_capture_hooks(model) -> int:
    """Counted here by hand: forward hooks defined in Transformers' output-capturing module."""
    return sum(getattr(hook, "__module__", "") == "transformers.utils.output_capturing"
               for module in model.bridge.modules() for hook in module._forward_hooks.values())


def test_transformers_own_capture_hooks_survive_exclusive_and_are_not_counted(tiny_model_dir):
    """Invariant: Transformers installs its output-capturing hooks once per model (the first
    `run_with_cache` here) and marks the model as hooked, so removing them would break
    `output_attentions`-style requests for the model's life; `exclusive()` must neither call
    them leftovers nor remove them, and `active_hook_count()` must not count them."""
    model = load_model(str(tiny_model_dir), device="cpu")
    tokens = model.to_tokens("Mary and John went")
    with model.exclusive() as bridge, torch.no_grad():
        bridge.run_with_cache(tokens)
    installed = transformers_capture_hooks(model)
    assert installed > 0
    assert model.active_hook_count() == 0
    with model.exclusive() as bridge, torch.no_grad():
        bridge.run_with_cache(tokens)
    assert transformers_capture_hooks(model) == installed
