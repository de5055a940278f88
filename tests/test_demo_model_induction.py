"""The induction task on the bundled demo model finds the card's induction circuit (#28).

Reference: assets/models/demo-gpt2/ground_truth.json, whose `induction_circuit` names the
induction heads (ablation on held-out repeated random tokens, in the training code's own HF
implementation) and the previous-token heads below them. The heads are read from the card,
never written here, so a retrained demo model brings its own answer. Our side: the patching
engine's heads sweep on the induction task, the attention library's induction scores, and set
path patching into the induction heads' keys.
"""

from __future__ import annotations

import json

import pytest

from interp import induction
from interp.attention import head_scores
from interp.models import DEMO_MODEL_DIR, load_model
from interp.patching import patch_heads
from interp.patching_tasks import task_inputs

CARD = DEMO_MODEL_DIR / "ground_truth.json"


def card_circuit() -> dict:
    card = json.loads(CARD.read_text())
    if "induction_circuit" not in card:
        pytest.fail("the demo model's card names no induction circuit (retrain it: #20)")
    return card["induction_circuit"]


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def circuit():
    found = card_circuit()
    return ({tuple(h) for h in found["induction_heads"]},
            {tuple(h) for h in found["previous_token_heads"]})


def top(values, k: int) -> set[tuple[int, int]]:
    n_heads = values.shape[1]
    order = values.flatten().argsort(descending=True)[:k].tolist()
    return {(i // n_heads, i % n_heads) for i in order}


def test_the_heads_sweep_ranks_the_card_induction_heads_first(demo, circuit):
    induction_heads, _ = circuit
    task = induction.induction_task(demo, length=20, n_sequences=16, seed=11)
    inputs, metric = task_inputs(demo, task, "logit_diff")
    result = patch_heads(demo, inputs, metric, direction="denoising")
    assert top(result.normalized, len(induction_heads)) == induction_heads
    check = induction.check_induction(demo, task, result)
    assert set(check.induction_heads) >= induction_heads


def test_the_card_induction_heads_have_the_top_induction_scores(demo, circuit):
    induction_heads, _ = circuit
    scores = head_scores(demo, repeat_length=24, seed=3).scores["induction"]
    assert top(scores, len(induction_heads)) == induction_heads


def test_path_patching_from_the_previous_token_heads_beats_every_disjoint_set(demo, circuit):
    induction_heads, card_previous = circuit
    task = induction.induction_task(demo, length=20, n_sequences=16, seed=12,
                                    corruption="new_first_half")
    check = induction.check_induction(demo, task)
    found_previous = set(check.previous_token_heads)
    assert found_previous, "no previous-token head found below the induction heads"
    assert found_previous & card_previous
    path = induction.induction_path(demo, task, sorted(found_previous), sorted(induction_heads),
                                    max_controls=500)
    best, best_share = path.best_control
    assert path.share > best_share, (path.share, best, best_share)
    assert path.share > 0.5
