"""Which model architectures each patching method supports, and the check that says so.

The staircase engine, path patching and attribution patching drive GPT-2-style blocks directly
(learned positions added at the embedding, attention then MLP, resid_post = resid_mid +
mlp(ln2(resid_mid)), one fused q/k/v projection); on another architecture they would compute
numbers that assume GPT-2's blocks. Hooked patching (one hooked forward pass per patch) needs
only the bridge's hooks and runs on any bridged model.
"""

from __future__ import annotations

from interp.errors import UnsupportedArchitectureError

# Hugging Face model classes whose blocks are GPT-2's (the bundled demo model is one).
GPT2_BLOCKS = ("GPT2LMHeadModel",)
ANY_BRIDGED_MODEL = "any model TransformerLens can bridge"

STAIRCASE = "the staircase patching engine"
HOOKED = "hooked patching"
PATH = "path patching"
ATTRIBUTION = "attribution patching"

SUPPORTED_ARCHITECTURES: dict[str, tuple[str, ...] | str] = {
    STAIRCASE: GPT2_BLOCKS,
    PATH: GPT2_BLOCKS,
    ATTRIBUTION: GPT2_BLOCKS,
    HOOKED: ANY_BRIDGED_MODEL,
}


def has_gpt2_blocks(model) -> bool:
    """A GPT-2 model class whose config also says learned positions and sequential blocks."""
    cfg = model.bridge.cfg
    return (model.info.architecture in GPT2_BLOCKS
            and getattr(cfg, "positional_embedding_type", "standard") == "standard"
            and not getattr(cfg, "parallel_attn_mlp", False))


def supports(model, method: str) -> bool:
    """Whether `model` can run `method` (GPT-2-style blocks, or any bridged model where that is enough)."""
    supported = SUPPORTED_ARCHITECTURES[method]
    return supported == ANY_BRIDGED_MODEL or has_gpt2_blocks(model)


def check_architecture(model, method: str) -> None:
    """Raise UnsupportedArchitectureError, in one line, unless `method` supports `model`."""
    if method not in SUPPORTED_ARCHITECTURES:
        raise KeyError(f"{method!r} declares no supported architectures")
    if not supports(model, method):
        supported = ", ".join(SUPPORTED_ARCHITECTURES[method])
        raise UnsupportedArchitectureError(
            f"{method.capitalize()} supports GPT-2-style models ({supported}); "
            f"{model.info.label} is a {model.info.architecture}: use exact patching (patch), "
            "which runs on any model through hooks.")
