"""One model shared by threads: hooks stay inside their own `hooked()` block.

The control test shows the hazard is real (a hook added to the bare bridge by one thread leaks
into another thread's forward pass), so the protected tests could fail.
"""

from __future__ import annotations

import threading

import torch


def scale_residual(factor: float):
    def hook(resid, hook):
        return resid * factor

    return hook


def clean_and_patched_reference(model, tokens, factor):
    clean = model.logits(tokens)
    with model.hooked([("blocks.1.hook_resid_pre", scale_residual(factor))]) as bridge:
        with torch.no_grad():
            patched = bridge(tokens)
    return clean, patched


def test_two_threads_patching_at_once_never_see_each_others_hooks(tiny_model):
    tokens = tiny_model.to_tokens("When Mary and John went to the store, John gave a drink to")
    factors = {"a": 0.0, "b": 3.0}
    expected = {name: clean_and_patched_reference(tiny_model, tokens, f)[1]
                for name, f in factors.items()}
    assert not torch.allclose(expected["a"], expected["b"])
    start = threading.Barrier(2)
    mismatches: list[str] = []

    def worker(name):
        start.wait()
        for _ in range(15):
            with tiny_model.hooked([("blocks.1.hook_resid_pre", scale_residual(factors[name]))]) as bridge:
                with torch.no_grad():
                    out = bridge(tokens)
            if not torch.allclose(out, expected[name], atol=1e-6):
                mismatches.append(name)

    threads = [threading.Thread(target=worker, args=(name,)) for name in factors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert mismatches == []
    assert tiny_model.active_hook_count() == 0


def test_a_plain_forward_waits_for_a_hooked_run_and_sees_no_hook(tiny_model):
    """Thread A holds a hook that changes the output and waits inside `hooked()`; thread B's
    plain `logits()` must equal the clean logits of a run made alone (the reference)."""
    tokens = tiny_model.to_tokens("The keys to the cabinet are")
    clean, patched = clean_and_patched_reference(tiny_model, tokens, 0.0)
    inside, release = threading.Event(), threading.Event()
    result = {}

    def hooked_holder():
        with tiny_model.hooked([("blocks.1.hook_resid_pre", scale_residual(0.0))]):
            inside.set()
            release.wait(timeout=30)

    def plain_reader():
        result["logits"] = tiny_model.logits(tokens)

    holder = threading.Thread(target=hooked_holder)
    holder.start()
    inside.wait(timeout=30)
    reader = threading.Thread(target=plain_reader)
    reader.start()
    reader.join(timeout=2)  # long enough for an unguarded forward pass to run hooked
    blocked_while_hooked = reader.is_alive()
    release.set()
    holder.join(timeout=30)
    reader.join(timeout=30)
    assert torch.allclose(result["logits"], clean, atol=1e-6)
    assert blocked_while_hooked
    assert not torch.allclose(clean, patched)
    assert tiny_model.active_hook_count() == 0


def test_control_a_bare_bridge_hook_does_leak_into_another_forward(tiny_model):
    """Control for the test above: without the lock, thread A's hook (added with
    `bridge.add_hook`, A waiting on an event) changes thread B's plain forward pass.

    Reference: the clean logits of a run made alone, before either thread starts.
    """
    tokens = tiny_model.to_tokens("The keys to the cabinet are")
    clean, _ = clean_and_patched_reference(tiny_model, tokens, 0.0)
    bridge = tiny_model.bridge
    attached, release = threading.Event(), threading.Event()
    seen = {}

    def hook_holder():
        bridge.add_hook("blocks.1.hook_resid_pre", scale_residual(0.0))
        try:
            attached.set()
            release.wait(timeout=30)
        finally:
            bridge.reset_hooks()

    def plain_forward():
        with torch.no_grad():
            seen["logits"] = bridge(tokens)

    with tiny_model.lock:  # keeps other users of the shared model out while we go around it
        holder = threading.Thread(target=hook_holder)
        holder.start()
        attached.wait(timeout=30)
        reader = threading.Thread(target=plain_forward)
        reader.start()
        reader.join(timeout=30)
        release.set()
        holder.join(timeout=30)
    assert not torch.allclose(seen["logits"], clean)
    assert tiny_model.active_hook_count() == 0


def test_hooks_are_removed_when_the_block_raises(tiny_model):
    tokens = tiny_model.to_tokens("A")
    try:
        with tiny_model.hooked([("blocks.0.hook_resid_pre", scale_residual(2.0))]) as bridge:
            bridge(tokens)
            raise KeyboardInterrupt  # a user cancelling mid-run
    except KeyboardInterrupt:
        pass
    assert tiny_model.active_hook_count() == 0
    assert tiny_model.lock.acquire(blocking=False)
    tiny_model.lock.release()
