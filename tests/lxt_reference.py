"""CP-LRP / AttnLRP relevance from `lxt` (the peer), run as its own process.

lxt patches GPT-2's classes (and torch's LayerNorm) globally, so it never runs in the test
process: `python tests/lxt_reference.py VARIANT ...` (cp, attnlrp) reads a JSON list of jobs
{"model_dir", "ids", "target_id", "contrast_id" (or null)} on stdin and prints {variant: [one
{"tokens": [...], "positions": [...], "value": x} per job]}: the relevance of each token
embedding and position embedding for the target logit (minus the contrast logit) at the last
position, and the target itself. Each variant is patched in a forked child, so the imports are
paid once.
"""

from __future__ import annotations

import json
import os
import sys
import types

# lxt.efficient.models imports every model family it patches; only GPT-2's is used here.
OTHER_LXT_MODELS = (("llama", "modeling_llama", "attnLRP"), ("qwen2", "modeling_qwen2", "attnLRP"),
                    ("qwen3", "modeling_qwen3", "attnLRP"), ("gemma3", "modeling_gemma3", "attnLRP"),
                    ("bert", "modeling_bert", "attnLRP"), ("vit_torch", "vision_transformer", "cp_LRP"))


def stub_other_lxt_models() -> None:
    """Stand-ins for lxt's other model modules: its BERT module breaks on transformers 5 and
    its ViT module needs torchvision (FIELD-NOTES); the rest only cost import time."""
    for name, attribute, rules in OTHER_LXT_MODELS:
        module = types.ModuleType(f"lxt.efficient.models.{name}")
        setattr(module, attribute, types.ModuleType(f"stub_{attribute}"))
        setattr(module, rules, {})
        sys.modules[module.__name__] = module


def patch_gpt2(variant: str) -> None:
    from lxt.efficient import monkey_patch
    from lxt.efficient.models import gpt2 as lxt_gpt2
    from transformers.models.gpt2 import modeling_gpt2

    registry = modeling_gpt2.ALL_ATTENTION_FUNCTIONS
    monkey_patch(modeling_gpt2, lxt_gpt2.cp_LRP if variant == "cp" else lxt_gpt2.attnLRP)
    # AttnLRP's patch swaps transformers 5's attention registry for a plain dict, which GPT-2
    # can no longer query; the eager function it wraps (the one we run) stays patched.
    modeling_gpt2.ALL_ATTENTION_FUNCTIONS = registry


def relevance(model_dir: str, ids: list[int], target_id: int, contrast_id: int | None) -> dict:
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    captured = {}

    def keep_positions(module, inputs, output):
        captured["positions"] = output.detach().requires_grad_(True)
        return captured["positions"]

    handle = model.transformer.wpe.register_forward_hook(keep_positions)
    try:
        embeds = model.transformer.wte(torch.tensor([ids])).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeds).logits[0, -1]
        value = logits[target_id] - (logits[contrast_id] if contrast_id is not None else 0)
        value.backward()
    finally:
        handle.remove()
    positions = captured["positions"]
    return {"tokens": (embeds * embeds.grad)[0].sum(-1).tolist(),
            "positions": (positions * positions.grad).reshape(len(ids), -1).sum(-1).tolist(),
            "value": float(value.detach())}


def in_forked_child(variant: str, jobs: list[dict]) -> list[dict]:
    """Patch and compute in a child process, so the next variant starts from unpatched classes."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 1
        try:
            patch_gpt2(variant)
            results = [relevance(job["model_dir"], job["ids"], job["target_id"],
                                 job.get("contrast_id")) for job in jobs]
            with os.fdopen(write_end, "w") as pipe:
                json.dump(results, pipe)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"the {variant} child failed (status {status})")
    return json.loads(text)


if __name__ == "__main__":
    stub_other_lxt_models()
    import lxt.efficient  # noqa: F401  (imported before forking, patched only in the children)
    from transformers import GPT2LMHeadModel  # noqa: F401
    from transformers.models.gpt2 import modeling_gpt2  # noqa: F401

    all_jobs = json.load(sys.stdin)
    print(json.dumps({variant: in_forked_child(variant, all_jobs) for variant in sys.argv[1:]}))
