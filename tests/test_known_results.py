"""Known results: the table's format, the pass rules and the refusal, on models that are not
GPT-2 (the checks on real GPT-2 are in test_known_results_gpt2.py, marker `gpt2`)."""

from types import SimpleNamespace

import pytest
import torch

from interp import known_results as kr
from interp.errors import InvalidOptionError


def fake_model(name: str, **shape):
    info = SimpleNamespace(**{**kr.GPT2_SMALL_SHAPE, **shape})
    return SimpleNamespace(name=name, info=info)


def test_identity_needs_the_hub_id_and_gpt2_small_shape():
    """Hand-built cases: name and shape decide."""
    assert kr.gpt2_small_identity(fake_model("gpt2"))[0]
    assert kr.gpt2_small_identity(fake_model("openai-community/gpt2"))[0]
    real, why = kr.gpt2_small_identity(fake_model("/tmp/my-gpt2"))
    assert not real and "not GPT-2 small" in why
    real, why = kr.gpt2_small_identity(fake_model("gpt2", n_layers=6))
    assert not real and "shape" in why


def test_heads_among_top_rule():
    """Scores built by hand: planted heads ranked 1-3 pass within the top 3, not within the top
    2, and only count as a pass on real GPT-2 small."""
    scores = torch.zeros(12, 12)
    planted = ((9, 9), (9, 6), (10, 0))
    for value, (layer, head) in zip((3.0, 2.0, 1.0), planted, strict=True):
        scores[layer, head] = value
    ours, verdict, _ = kr.heads_among_top(scores, planted, 3, "scores", real=True)
    assert verdict == kr.PASSED and ours == "9.9 #1, 9.6 #2, 10.0 #3"
    _, verdict, reason = kr.heads_among_top(scores, planted, 2, "scores", real=True)
    assert verdict == kr.DIFFERS and reason.startswith("10.0 not within the top 2")
    _, verdict, reason = kr.heads_among_top(scores, ((12, 0),), 3, "scores", real=True)
    assert verdict == kr.DIFFERS and "no head 12.0" in reason


def test_rank_of_puts_nan_last():
    """Hand count: with one NaN, the NaN head ranks last."""
    scores = torch.tensor([[0.5, float("nan")], [0.9, 0.1]])
    assert [kr.rank_of(scores, h) for h in ((1, 0), (0, 0), (1, 1), (0, 1))] == [1, 2, 3, 4]


def test_refuses_a_model_that_is_not_gpt2_small(tiny_model):
    with pytest.raises(InvalidOptionError, match="real GPT-2 small"):
        kr.known_results(tiny_model)


def test_command_refuses_without_force(tiny_model_dir, capsys):
    assert kr.main(["--model", str(tiny_model_dir)]) == 2
    assert "Refused" in capsys.readouterr().out


@pytest.mark.slow
def test_forced_run_reports_every_check_as_differs_or_shown(tiny_model_dir, capsys):
    """End to end on a random model (invariant: random weights reproduce no paper, so every
    row with a pass rule says "differs", none errs, and the two figure-only findings are shown)."""
    assert kr.main(["--model", str(tiny_model_dir), "--force"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    verdicts = [row.split(" | ")[4] for row in rows[1:]]
    assert len(verdicts) == 8
    assert verdicts.count(kr.SHOWN) == 2
    assert set(verdicts) == {kr.DIFFERS, kr.SHOWN}
    for source in ("Olsson et al. 2022", "Wang et al. 2022", "Meng et al. 2022",
                   "nostalgebraist 2020"):
        assert source in table
