"""LRP (CP-LRP and AttnLRP) against the `lxt` peer, and relevance conservation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from interp.attribution import attribute, layer_flow, prompt_token_ids, resolve_target
from interp.errors import InvalidOptionError
from interp.models import DEMO_MODEL_DIR, load_model
from interp.random_models import save_random_gpt2
from tests.attribution_support import demo_model
from tests.conftest import TINY_SHAPE

LXT_REFERENCE = Path(__file__).with_name("lxt_reference.py")
PROMPT = "The cat sat on the mat because it"
IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"


def randomized_biases(folder: Path, scale: float) -> Path:
    """Give every linear and LayerNorm bias, and every LayerNorm weight, random values (a fresh
    GPT-2 has zero biases and unit LayerNorm weights, which would hide what biases absorb)."""
    model = GPT2LMHeadModel.from_pretrained(folder)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))
            elif ".ln_" in name and name.endswith(".weight"):
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder)
    return folder


def zeroed_biases(source: Path, folder: Path) -> Path:
    """The same weights with every bias (linear and LayerNorm) set to zero."""
    model = GPT2LMHeadModel.from_pretrained(source)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.zero_()
    model.save_pretrained(folder)
    for file in source.glob("tokenizer*"):
        (folder / file.name).write_bytes(file.read_bytes())
    return folder


@pytest.fixture(scope="module")
def biased_dir(tmp_path_factory):
    folder = save_random_gpt2(tmp_path_factory.mktemp("biased-gpt2"), seed=3, **TINY_SHAPE)
    return randomized_biases(folder, scale=0.2)


@pytest.fixture(scope="module")
def biased(biased_dir):
    return load_model(str(biased_dir), device="cpu")


@pytest.fixture(scope="module")
def unbiased(biased_dir, tmp_path_factory):
    return load_model(str(zeroed_biases(biased_dir, tmp_path_factory.mktemp("unbiased"))),
                      device="cpu")


@pytest.fixture(scope="module")
def demo():
    return demo_model()


def lxt_relevance(variants: list[str], jobs: list[dict]) -> dict[str, list[dict]]:
    """lxt's relevance for each job and variant, from a separate process (lxt patches classes
    globally)."""
    completed = subprocess.run([sys.executable, str(LXT_REFERENCE), *variants],
                               input=json.dumps(jobs), capture_output=True, text=True,
                               timeout=600, cwd=LXT_REFERENCE.parent.parent)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def job(model, model_dir, prompt, target):
    ids = prompt_token_ids(model, prompt)
    resolved = resolve_target(model, ids, target)
    return ids, resolved, {"model_dir": str(model_dir), "ids": list(ids),
                           "target_id": resolved.token_id, "contrast_id": resolved.contrast_id}


def assert_relative_close(ours: torch.Tensor, reference: list[float], rel: float = 1e-3) -> None:
    reference = torch.tensor(reference)
    error = (ours - reference).norm() / reference.norm()
    assert error <= rel, f"relative error {error:.2e}"
    torch.testing.assert_close(ours, reference, rtol=rel, atol=rel * float(reference.abs().max()))


@pytest.fixture(scope="module")
def lxt_cases(biased, biased_dir, demo):
    """Prompts and targets on a tiny GPT-2 with random biases and on the demo model, with
    lxt's relevance for both variants."""
    cases = [(biased, *job(biased, biased_dir, PROMPT, None)),
             (biased, *job(biased, biased_dir, PROMPT, (" the", " a"))),
             (demo, *job(demo, DEMO_MODEL_DIR, IOI_PROMPT, (" Mary", " John")))]
    return cases, lxt_relevance(["cp", "attnlrp"], [spec for *_, spec in cases])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["cp", "attnlrp"])
def test_lrp_equals_lxt(lxt_cases, variant):
    """Reference: lxt 2.1's CP-LRP / AttnLRP patches of Hugging Face's GPT-2 (run in a separate
    process), on a tiny GPT-2 with random biases and on the demo model, within 1e-3 relative."""
    cases, references = lxt_cases
    for (model, ids, target, _), reference in zip(cases, references[variant], strict=True):
        result = attribute(model, ids, "lrp", target=target, variant=variant)
        assert_relative_close(result.scores, reference["tokens"])
        assert_relative_close(result.extras["position_relevance"], reference["positions"])
        assert result.target_value == pytest.approx(reference["value"], rel=1e-4, abs=1e-5)
        # lxt's rules did change the backward pass: its relevance is not plain gradient x input.
        plain = attribute(model, ids, "gradient_x_input", target=target).scores
        assert (plain - torch.tensor(reference["tokens"])).norm() > 0.01 * plain.norm()


@pytest.mark.parametrize("target", [None, (" the", " a")])
def test_cp_lrp_conserves_the_target_without_biases(unbiased, target):
    """Invariant (Ali et al. 2022): with every linear and LayerNorm bias zero, token plus
    position relevance adds up to the target logit (within 1%); the target itself is checked
    against Hugging Face's logits for the same weights."""
    result = attribute(unbiased, PROMPT, "lrp", target=target)
    ids = prompt_token_ids(unbiased, PROMPT)
    hf_model = GPT2LMHeadModel.from_pretrained(unbiased.info.source).eval()
    with torch.no_grad():
        logits = hf_model(torch.tensor([ids])).logits[0, -1]
    expected = float(logits[result.target.token_id]) - (
        float(logits[result.target.contrast_id]) if result.target.contrast_id is not None else 0.0)
    assert result.target_value == pytest.approx(expected, abs=1e-4)
    total = float(result.scores.sum() + result.extras["position_relevance"].sum())
    assert abs(expected) > 1e-3
    assert total == pytest.approx(expected, rel=0.01)
    assert abs(result.extras["bias_relevance"]) <= 0.01 * abs(expected)


def test_lrp_reports_what_the_biases_absorb(biased):
    """Invariant: tokens + positions + bias relevance = the target; with random biases the
    biases take a visible share, which the notes state."""
    result = attribute(biased, PROMPT, "lrp")
    extras = result.extras
    total = float(result.scores.sum() + extras["position_relevance"].sum())
    assert total + extras["bias_relevance"] == pytest.approx(result.target_value, abs=1e-5)
    assert abs(extras["bias_share"]) > 0.01
    assert extras["bias_share"] == pytest.approx(extras["bias_relevance"] / result.target_value)
    assert "biases" in result.notes[0]
    assert biased.active_hook_count() == 0


def test_lrp_leaves_no_hook_after_an_exception(biased):
    """Invariant: LRP's temporary hooks (hook points and the GELU module hooks) are gone after
    a run that fails inside the hooked block."""
    def fail(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        attribute(biased, PROMPT, "lrp", progress=fail)
    assert biased.active_hook_count() == 0
    act = biased.bridge.blocks[0].mlp.original_component.act
    assert not act._forward_hooks


def test_unknown_lrp_variant(biased):
    with pytest.raises(InvalidOptionError, match="'attnlrp'"):
        attribute(biased, PROMPT, "lrp", variant="zennit")


def test_cp_lrp_flow_conserves_the_target_at_every_layer(unbiased):
    """Invariant: without biases, CP-LRP's relevance of the residual stream adds up to the
    target at every layer; row 0 (token + position embedding) equals the input relevance, and
    after the last block it all sits at the last position (the only one the logits read)."""
    flow = layer_flow(unbiased, PROMPT, target=(" the", " a"))
    totals = flow.residual_totals
    torch.testing.assert_close(totals, torch.full_like(totals, flow.target_value), rtol=0.01,
                               atol=0.0)
    inputs = attribute(unbiased, PROMPT, "lrp", target=(" the", " a"))
    torch.testing.assert_close(flow.residual[0], inputs.scores + inputs.extras["position_relevance"],
                               rtol=1e-4, atol=1e-6)
    assert torch.all(flow.residual[-1, :-1] == 0)
    assert unbiased.active_hook_count() == 0


def test_gradient_flow_equals_manual_autograd(biased):
    """Reference: Hugging Face's blocks, attention and MLP modules captured by hooks on the
    same weights, gradient x activation by hand."""
    ids = prompt_token_ids(biased, PROMPT)
    target = resolve_target(biased, ids, None)
    hf_model = GPT2LMHeadModel.from_pretrained(biased.info.source).eval()
    blocks = hf_model.transformer.h
    captured, handles = {}, []
    for layer, block in enumerate(blocks):
        handles += [
            block.register_forward_pre_hook(lambda m, a, layer=layer: captured.update({("resid", layer): a[0]})),
            block.attn.register_forward_hook(lambda m, a, o, layer=layer: captured.update({("attn", layer): o[0]})),
            block.mlp.register_forward_hook(lambda m, a, o, layer=layer: captured.update({("mlp", layer): o})),
        ]
    handles.append(blocks[-1].register_forward_hook(
        lambda m, a, o: captured.update({("resid", len(blocks)): o[0] if isinstance(o, tuple) else o})))
    try:
        value = hf_model(torch.tensor([ids])).logits[0, -1, target.token_id]
        keys = list(captured)
        grads = torch.autograd.grad(value, [captured[key] for key in keys])
    finally:
        for handle in handles:
            handle.remove()
    manual = {key: (captured[key] * grad)[0].sum(-1).detach() for key, grad in zip(keys, grads, strict=True)}
    flow = layer_flow(biased, PROMPT, method="gradient_x_input")
    n_layers = len(blocks)
    for layer in range(n_layers + 1):
        torch.testing.assert_close(flow.residual[layer], manual["resid", layer], rtol=1e-4, atol=1e-6)
    for layer in range(n_layers):
        torch.testing.assert_close(flow.attention[layer], manual["attn", layer], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(flow.mlp[layer], manual["mlp", layer], rtol=1e-4, atol=1e-6)
