"""On the demo model's IOI task the answer is known: the indirect object's name."""

from __future__ import annotations

import pytest

from interp.attribution import attribute, prompt_token_ids
from interp.demo_model.corpus import ioi_prompts
from tests.attribution_support import demo_model


@pytest.fixture(scope="module")
def demo():
    return demo_model()


def io_position(model, prompt) -> int:
    """The position of the indirect object's name (it occurs once; the subject twice)."""
    tokens = model.display_tokens(prompt_token_ids(model, prompt.text))
    (position,) = [i for i, token in enumerate(tokens) if token == f"␣{prompt.io}"]
    return position


@pytest.mark.slow
@pytest.mark.parametrize("method, options", [
    pytest.param("integrated_gradients", {"n_steps": 64}, marks=pytest.mark.xfail(
        strict=True, reason="measured on demo model v2: integrated gradients (end-of-text "
        "baseline, 64 steps) ranks the indirect object first on none of the first 8 held-out "
        "prompts (on v1: 1-3 of 8)")),
    ("gradient_x_input", {}), ("lrp", {})])
def test_gradient_methods_rank_the_indirect_object_first(demo, method, options):
    """Reference: the IOI prompt's construction (held-out split of the demo corpus), whose answer
    the model gives. One prompt: on demo model v2, across the first 8 held-out prompts LRP ranks
    the indirect object first on all 8 (test below), gradient x input on 4 (this one among
    them), integrated gradients on none."""
    prompt = ioi_prompts("test", 8)[2]
    position = io_position(demo, prompt)
    result = attribute(demo, prompt.text, method, **options)
    assert demo.decode([result.target.token_id]) == f" {prompt.io}"
    assert result.ranking()[0] == position, (method, options)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["predicted", "contrast"])
def test_lrp_ranks_the_indirect_object_first_on_held_out_prompts(demo, target):
    """Reference: the IOI prompts' construction (8 held-out prompts, ABBA and BABA); the
    target is the predicted name or logit(IO) - logit(S)."""
    prompts = ioi_prompts("test", 8)
    hits = 0
    for prompt in prompts:
        chosen = None if target == "predicted" else (f" {prompt.io}", f" {prompt.s}")
        result = attribute(demo, prompt.text, "lrp", target=chosen)
        hits += result.ranking()[0] == io_position(demo, prompt)
    assert hits >= 7
