"""Token display: GPT-2's byte alphabet, visible spaces, and bytes that are half a character."""

from __future__ import annotations

from interp.random_models import gpt2_tokenizer
from interp.tokens import SPACE_MARK, axis_labels, byte_decoder, display_tokens, token_bytes

TOKENIZER = gpt2_tokenizer()


def test_byte_alphabet_is_a_bijection_onto_all_256_bytes():
    decoder = byte_decoder()
    assert sorted(decoder.values()) == list(range(256))
    assert len(decoder) == 256
    # GPT-2 writes a space as "Ġ" (U+0120) and a newline as "Ċ" (U+010A).
    assert decoder["Ġ"] == 32 and decoder["Ċ"] == 10 and decoder["A"] == 65


def test_known_gpt2_ids():
    assert TOKENIZER(" Paris").input_ids == [6342]
    assert TOKENIZER("The cat is").input_ids == [464, 3797, 318]
    assert len(TOKENIZER) == 50257


def test_leading_space_newline_and_tab_are_visible():
    ids = TOKENIZER(" Paris\nParis\tx").input_ids
    shown = display_tokens(TOKENIZER, ids)
    assert shown[0] == f"{SPACE_MARK}Paris"
    assert "Paris" in shown and "↵" in "".join(shown) and "⇥" in "".join(shown)


def test_token_bytes_concatenate_to_the_utf8_text():
    text = "Café 🙂 naïve — 東京"
    ids = TOKENIZER(text).input_ids
    assert b"".join(token_bytes(TOKENIZER, i) for i in ids) == text.encode("utf-8")


def test_partial_characters_are_shown_as_hex_bytes():
    ids = TOKENIZER("🙂").input_ids
    shown = display_tokens(TOKENIZER, ids)
    raw = b"".join(token_bytes(TOKENIZER, i) for i in ids)
    assert raw == "🙂".encode()
    if len(ids) > 1:  # the emoji is split: every piece is a byte fragment
        assert all(s.startswith("<") and s.endswith(">") for s in shown)
        assert shown[0] == "<" + " ".join(f"{b:02X}" for b in token_bytes(TOKENIZER, ids[0])) + ">"


def test_special_token_is_shown_by_name():
    assert display_tokens(TOKENIZER, [50256]) == ["<|endoftext|>"]


def test_axis_labels_are_unique_even_for_repeated_tokens():
    labels = axis_labels(["␣the", "␣cat", "␣the"])
    assert len(set(labels)) == 3 and labels[2] == "2: ␣the"


def test_differing_tokens_marks_what_the_other_sequence_changed_inserted_or_lacks():
    """Hand-aligned cases: one substitution, one insertion, nothing in common."""
    from interp.tokens import differing_tokens
    assert differing_tokens([1, 2, 3, 4], [1, 9, 3, 4]) == [False, True, False, False]
    assert differing_tokens([1, 2, 7, 3], [1, 2, 3]) == [False, False, True, False]
    assert differing_tokens([5, 6], [7, 8]) == [True, True]
    assert differing_tokens([1, 2], [1, 2]) == [False, False]
