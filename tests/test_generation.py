"""Generation: equal to Hugging Face `generate`, reproducible, and safe at the window's edge."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InvalidOptionError
from interp.generation import chat_prompt, generate, nucleus
from interp.models import load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def demo_model():
    """The bundled demo model: trained, so its next-token distributions are sharp enough for the
    nucleus and the temperature to change which token is drawn."""
    return load_model("demo", device="cpu")


def hf_continuation(model, prompt: str, max_new_tokens: int, **sampling) -> list[int]:
    """Hugging Face's own `generate` on the same weights (the peer), eos and all."""
    ids = model.to_tokens(prompt).to(model.device)
    hf = model.bridge.original_model
    with model.exclusive(), torch.no_grad():
        out = hf.generate(ids, max_new_tokens=max_new_tokens, min_new_tokens=0, top_k=0,
                          pad_token_id=model.tokenizer.eos_token_id, **sampling)
    new = out[0, ids.shape[1]:].tolist()
    eos = model.tokenizer.eos_token_id
    return new[:new.index(eos)] if eos in new else new


def test_greedy_generation_equals_hugging_face_generate(tiny_model):
    """Reference: transformers' `generate(do_sample=False)` on the same model."""
    ours = generate(tiny_model, PROMPT, max_new_tokens=12, temperature=0, stop=()).run()
    assert [t.token_id for t in ours.tokens] == hf_continuation(tiny_model, PROMPT, 12,
                                                                do_sample=False)


@pytest.mark.parametrize("model_name, temperature, top_p", [
    ("tiny_model", 1.0, 1.0), ("tiny_model", 0.7, 0.9), ("demo_model", 0.6, 0.8),
    ("demo_model", 1.3, 0.95)])
def test_sampled_generation_equals_hugging_face_generate_with_the_same_seed(
        request, model_name, temperature, top_p):
    """Reference: transformers' `generate(do_sample=True)` after `torch.manual_seed(seed)`: its
    temperature and top-p warpers and multinomial draw, from a generator in the same state."""
    model, compared = request.getfixturevalue(model_name), 0
    for seed in range(4):
        ours = generate(model, PROMPT, max_new_tokens=15, temperature=temperature, top_p=top_p,
                        seed=seed, stop=()).run()
        torch.manual_seed(seed)
        theirs = hf_continuation(model, PROMPT, 15, do_sample=True, temperature=temperature,
                                 top_p=top_p)
        assert [t.token_id for t in ours.tokens] == theirs, f"seed {seed}"
        compared += len(theirs)
    assert compared >= 8  # a real comparison, not empty lists


def test_a_seed_gives_the_same_text_and_other_seeds_differ(tiny_model):
    """Invariant: same seed, same tokens; a draw from a 50,257-token softmax differs across seeds."""
    runs = [[t.token_id for t in generate(tiny_model, PROMPT, 10, seed=s, stop=()).run().tokens]
            for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_probability_is_the_models_own_softmax(tiny_model):
    """Reference: the softmax of the model's logits over prompt + tokens so far, by hand."""
    generation = generate(tiny_model, PROMPT, 3, temperature=0.5, seed=0, stop=()).run()
    ids = tiny_model.to_tokens(PROMPT)[0].tolist()
    for token in generation.tokens:
        probs = torch.softmax(tiny_model.logits(torch.tensor([ids]))[0, -1].double(), dim=-1)
        assert token.probability == pytest.approx(float(probs[token.token_id]), rel=1e-4)
        ids.append(token.token_id)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    """Hand calculation: probabilities 0.5, 0.3, 0.15, 0.05; top_p 0.8 keeps the first two (0.8),
    top_p 0.81 keeps three, and the most likely token always stays."""
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(nucleus(logits, p)).tolist()  # noqa: E731
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.1) == [True, False, False, False]


def test_generation_stops_at_a_stop_string_and_keeps_the_text_before_it(tiny_model):
    """Invariant: the text equals the unstopped text cut at the first stop string."""
    free = generate(tiny_model, PROMPT, 30, seed=5, stop=()).run()
    cut_at = next(text for text in (" the", "e", " ") if text in free.text)
    stopped = generate(tiny_model, PROMPT, 30, seed=5, stop=(cut_at,)).run()
    assert stopped.text == free.text[:free.text.index(cut_at)]
    assert stopped.stop_reason == f"stop {cut_at!r}"
    assert free.stop_reason in {"limit", "end_of_text"}


def test_a_prompt_longer_than_the_window_is_cut_from_the_left_with_a_note(tiny_model):
    """Invariant: the kept prompt is the last n_ctx - max_new_tokens tokens of the full one."""
    n_ctx = tiny_model.info.n_ctx
    long_prompt = " ".join(["word"] * (2 * n_ctx))
    full = tiny_model.to_tokens(long_prompt)[0].tolist()
    generation = generate(tiny_model, long_prompt, max_new_tokens=8, temperature=0)
    tokens = [t.token_id for t in generation]
    assert generation.prompt_ids == tuple(full[-(n_ctx - 8):])
    assert generation.dropped_tokens == len(full) - (n_ctx - 8)
    assert str(generation.dropped_tokens) in generation.note
    assert len(tokens) <= 8


def test_text_stream_yields_the_pieces_of_the_text(tiny_model):
    generation = generate(tiny_model, PROMPT, 6, seed=0, stop=())
    assert "".join(generation.text_stream()) == generation.text
    assert generation.note is None


@pytest.mark.parametrize("options", [dict(max_new_tokens=0), dict(max_new_tokens=64),
                                     dict(temperature=-1), dict(top_p=0), dict(top_p=1.5)])
def test_bad_sampling_settings_are_typed_errors(tiny_model, options):
    with pytest.raises(InvalidOptionError):
        generate(tiny_model, PROMPT, **{"max_new_tokens": 5, **options})


def test_chat_prompt_lays_out_the_turns_for_the_next_speaker():
    """Hand-written expected text."""
    turns = [("User", "Hi there"), ("Assistant", "Hello!\nHow can I help?")]
    assert chat_prompt(turns) == "User: Hi there\nAssistant: Hello! How can I help?\nAssistant:"
    with pytest.raises(InvalidOptionError):
        chat_prompt([("System", "x")])
