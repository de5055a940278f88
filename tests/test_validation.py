"""Prompt checks shared by every page."""

from __future__ import annotations

import pytest

from interp import InvalidPromptError, check_prompt
from interp.random_models import gpt2_tokenizer


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None])
def test_empty_prompt_is_refused(tiny_model, prompt):
    with pytest.raises(InvalidPromptError, match="empty"):
        check_prompt(prompt, tiny_model)


def test_prompt_longer_than_the_context_says_by_how_much(tiny_model):
    n_ctx = tiny_model.info.n_ctx
    prompt = " the" * (n_ctx + 5)  # " the" is one GPT-2 token; BOS adds one more
    with pytest.raises(InvalidPromptError) as error:
        check_prompt(prompt, tiny_model)
    assert f"{n_ctx + 6} tokens" in str(error.value) and "by 6 tokens" in str(error.value)


def test_prompt_exactly_at_the_context_length_passes(tiny_model):
    n_ctx = tiny_model.info.n_ctx
    checked = check_prompt(" the" * (n_ctx - 1), tiny_model)
    assert checked.n_tokens == n_ctx


@pytest.mark.parametrize("bad, code", [("a\x00b", "U+0000"), ("bell\x07", "U+0007"),
                                       ("zero\u200bwidth", "U+200B"), ("esc\x1b[0m", "U+001B")])
def test_control_characters_are_named_with_their_position(tiny_model, bad, code):
    with pytest.raises(InvalidPromptError, match=code.replace("+", r"\+")):
        check_prompt(bad, tiny_model)


def test_newlines_and_tabs_are_fine(tiny_model):
    checked = check_prompt("line one\n\tline two", tiny_model)
    assert checked.n_tokens > 3 and not checked.notes


def test_non_ascii_and_emoji_are_tokenized_with_a_note(tiny_model):
    checked = check_prompt("Café 🙂", tiny_model)
    assert checked.token_ids[0] == 50256  # BOS
    assert list(checked.token_ids[1:]) == gpt2_tokenizer()("Café 🙂").input_ids
    assert checked.notes and "non-ASCII" in checked.notes[0]
