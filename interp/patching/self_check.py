"""A one-time check per loaded model that the staircase engine computes what hooked runs compute.

The staircase engine re-implements parts of a GPT-2 block (the last block at the last position,
a head's output through W_O, cached keys and values); a model whose blocks differ would get
wrong numbers from it with no error. So before its first use on a model, a few probe patches
run both ways, the staircase and one plain hooked forward pass each, and the fast engine is
trusted only if every last-position logit agrees within 1e-4 x the largest |logit| (real
GPT-2's logits reach about -100, where float32 spacing is ~8e-6 and batched matrix products
round differently, so an absolute tolerance would refuse the real model). The verdict is kept
for the model's lifetime.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch

from interp.patching.architecture import STAIRCASE, supports
from interp.patching.hooked import hooked_logits
from interp.patching.runs import Patch, cache_names, cached_run
from interp.patching.staircase import staircase_pass

RELATIVE_TOLERANCE = 1e-4
PROBE_POSITIONS = 8


@dataclass(frozen=True)
class StaircaseVerdict:
    """Whether the staircase engine may run on a model, and the evidence."""

    trusted: bool
    max_difference: float
    max_abs_logit: float
    note: str


_verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_verdicts_lock = threading.Lock()


def staircase_verdict(model) -> StaircaseVerdict:
    """The cached verdict for `model`, checking it on first use (thread-safe, once per model)."""
    with _verdicts_lock:
        verdict = _verdicts.get(model)
        if verdict is None:
            verdict = check_staircase(model)
            _verdicts[model] = verdict
        return verdict


def probe_tokens(model) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Clean and corrupted probe prompts [1, pos] that differ from the middle on, and where."""
    n_pos = min(PROBE_POSITIONS, model.info.n_ctx)
    vocab = model.info.d_vocab
    clean = torch.tensor([[(101 + 1009 * i) % vocab for i in range(n_pos)]])
    first_corrupted = n_pos // 2
    corrupted = clean.clone()
    corrupted[0, first_corrupted:] = (clean[0, first_corrupted:] + 7919) % vocab
    return clean, corrupted, first_corrupted


def probe_patches(model, first_corrupted: int, n_pos: int) -> list[Patch]:
    """Patches that take every road through the engine: residual entries before, inside and
    after blocks, cached prefixes, the W_O update, hooks in the last block, the last block."""
    last, p = model.info.n_layers - 1, first_corrupted
    return [
        Patch("resid_pre", 0, (p + 1,)), Patch("resid_pre", last, (n_pos - 1,)),
        Patch("attn_out", 0, (p,)), Patch("mlp_out", last, (p,)),
        Patch("resid_post", last, (n_pos - 1,)),
        Patch("z", 0, (slice(None), 0)), Patch("z", last, (p, model.info.n_heads - 1)),
        Patch("q", last, (slice(None), 0)), Patch("pattern", 0, (0, p)),
    ]


def cache_agreement(engine_cache: dict, bridge_cache: dict) -> tuple[float, float]:
    """(max |difference|, max |value|) over every activation of two caches of the same run."""
    difference = scale = 0.0
    for name, reference in bridge_cache.items():
        engine = engine_cache[name]
        if engine.shape != reference.shape:
            return float("inf"), 0.0
        difference = max(difference, float((engine - reference).abs().max()))
        scale = max(scale, float(reference.abs().max()))
    return difference, scale


def check_staircase(model) -> StaircaseVerdict:
    """Whether the fast staircase engine agrees with plain hooked runs on this model."""
    if not supports(model, STAIRCASE):
        return StaircaseVerdict(False, float("nan"), float("nan"),
                                f"{model.info.architecture} blocks are not GPT-2's: the "
                                "staircase engine is not used")
    clean, corrupted, first_corrupted = probe_tokens(model)
    n_pos = clean.shape[1]
    patches = probe_patches(model, first_corrupted, n_pos)
    names = list(dict.fromkeys(name for p in patches
                               for name in cache_names(p.site, model.info.n_layers)))
    bridge = model.bridge

    def logits_at(last_resid: torch.Tensor) -> torch.Tensor:
        return bridge.unembed(bridge.ln_final(last_resid.unsqueeze(1)))[:, 0]

    try:
        # The engine's own cached runs (plain on a GPT-2); the hooked references patch from the
        # clean one, so it must equal the bridge's own cache, checked here too.
        _, clean_cache = cached_run(model, clean, names, plain=True)
        _, corrupted_cache = cached_run(model, corrupted, names, plain=True)
        _, bridge_cache = cached_run(model, clean, names)
        cache_difference, cache_scale = cache_agreement(clean_cache, bridge_cache)
        fast, reference = [], []
        for p in patches:
            first = p.first_changed(first_corrupted)
            fast.append(staircase_pass(model, [p], corrupted_cache, clean_cache, 1, logits_at,
                                       first)[0])  # type: ignore[arg-type]  # its patches change a position
            reference.append(hooked_logits(model, [p], corrupted, clean_cache, 1)[0])
    except Exception as error:  # any failure of the re-implementation means: don't use it
        return StaircaseVerdict(False, float("nan"), float("nan"),
                                f"the staircase engine failed its self-check "
                                f"({type(error).__name__}: {error})")
    fast_logits = torch.stack(fast).float().cpu()
    reference_logits = torch.stack(reference).float().cpu()
    difference = float((fast_logits - reference_logits).abs().max())
    scale = float(reference_logits.abs().max())
    caches_agree = cache_difference <= RELATIVE_TOLERANCE * cache_scale
    trusted = difference <= RELATIVE_TOLERANCE * scale and caches_agree
    note = (f"staircase self-check: max |staircase - hooked| = {difference:.3g} of max |logit| "
            f"{scale:.3g} (tolerance {RELATIVE_TOLERANCE:g} x)"
            + ("" if caches_agree else f", cached activations off by {cache_difference:.3g}")
            + ": " + ("passed" if trusted else "failed, so every patch runs as a hooked forward pass"))
    return StaircaseVerdict(trusted, difference, scale, note)
