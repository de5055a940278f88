"""Prompt checks shared by every page."""

from __future__ import annotations

from pathlib import Path

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


def test_typed_end_of_text_is_noted_as_the_special_token(tiny_model):
    """Reference: GPT-2's vocabulary, where <|endoftext|> is id 50256 (a hand-known id)."""
    checked = check_prompt("one <|endoftext|> two", tiny_model)
    assert checked.token_ids.count(50256) == 2  # the start token and the typed text
    assert len(checked.notes) == 1
    note = checked.notes[0]
    assert "<|endoftext|>" in note and "special token" in note and "50256" in note
    assert not check_prompt("one endoftext two", tiny_model).notes


def test_non_ascii_note_follows_the_tokenizer_kind(tiny_model):
    """Invariant: the note says "reads bytes" exactly when the tokenizer is byte-level BPE
    (GPT-2's and the demo model's), and "does not read bytes" for a word-level tokenizer
    built here."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    note = check_prompt("Café 🙂", tiny_model).notes[0]
    assert "reads bytes" in note and "GPT-2 reads" not in note

    from interp.tokens import reads_bytes
    from interp.validation import non_ascii_note

    demo_folder = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-gpt2"
    assert reads_bytes(PreTrainedTokenizerFast.from_pretrained(demo_folder))  # its own BPE
    word_level = Tokenizer(WordLevel({"[UNK]": 0, "Caf": 1, "cafe": 2}, unk_token="[UNK]"))
    word_level.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]")
    ids = tokenizer("cafe Café")["input_ids"]
    assert ids[0] == 2 and 0 in ids
    other = non_ascii_note(tokenizer, ids, tokenizer.convert_ids_to_tokens(ids))
    assert "does not read bytes" in other and "[UNK]" in other
