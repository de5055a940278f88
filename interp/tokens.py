"""Showing tokens as a reader needs to see them.

GPT-2's tokenizer works on bytes: a token may start with a space (" Paris" is one token, "Paris"
another) or hold part of a multi-byte character such as an emoji. `display_tokens` makes both
visible: a leading space becomes "␣", a newline "↵", a tab "⇥", and bytes that are not a whole
character are shown as hex (`<F0 9F>`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from difflib import SequenceMatcher
from functools import cache

# Metadata of a result field meant for the screen only (display tokens with their marks): exports
# leave it out and write the raw `token_texts` and `token_ids` beside it instead.
SCREEN_ONLY = {"screen_only": True}
SPACE_MARK = "␣"
VISIBLE_WHITESPACE = {" ": SPACE_MARK, "\n": "↵", "\t": "⇥", "\r": "␍"}


@cache
def byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table (every byte has a printable stand-in).

    Bytes that are printable Latin-1 stand for themselves; the remaining 68 map, in order, to
    code points from 256 up (as in GPT-2's `encoder.py`).
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    mapping = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The raw bytes a token stands for."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return b""
    decoder = byte_decoder()
    if all(ch in decoder for ch in piece):
        return bytes(decoder[ch] for ch in piece)
    return piece.encode("utf-8")  # special tokens such as <|endoftext|>, and non-byte-level vocabularies


def reads_bytes(tokenizer) -> bool:
    """True for a byte-level BPE tokenizer (GPT-2's kind), which can encode any text."""
    if hasattr(tokenizer, "byte_encoder"):  # the slow Python GPT-2 tokenizer
        return True
    pre_tokenizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre_tokenizer is None:
        return False
    return '"ByteLevel"' in pre_tokenizer.__getstate__().decode("utf-8", "replace")


def special_tokens_in(tokenizer, text: str) -> list[str]:
    """Special-token strings (e.g. `<|endoftext|>`) typed literally in `text`, in order found."""
    specials = sorted(set(getattr(tokenizer, "all_special_tokens", []) or []), key=text.find)
    return [token for token in specials if token and token in text]


def visible(text: str) -> str:
    """Make whitespace visible, so " Paris" and "Paris" look different."""
    return "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in text)


def display_token(tokenizer, token_id: int) -> str:
    """One token as a reader should see it (see the module docstring)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if int(token_id) in special:
        return tokenizer.convert_ids_to_tokens(int(token_id))
    raw = token_bytes(tokenizer, token_id)
    try:
        return visible(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02X}" for b in raw) + ">"


def display_tokens(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """Each token of `token_ids` as shown on screen."""
    return [display_token(tokenizer, int(t)) for t in token_ids]


def token_texts(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """Each token's own text, exactly as the tokenizer decodes it alone (a token holding part of
    a multi-byte character decodes to U+FFFD; its id says which bytes it was)."""
    return [tokenizer.decode([int(t)]) for t in token_ids]


def export_labels(texts: Sequence[str]) -> list[str]:
    """Position labels for exported tables: index plus the raw text, quoted so leading spaces
    and newlines stay readable ('2: " Mary"')."""
    return [f"{i}: {json.dumps(text, ensure_ascii=False)}" for i, text in enumerate(texts)]


def differing_tokens(ids: Sequence[int], other_ids: Sequence[int]) -> list[bool]:
    """For each token of `ids`, whether it lies outside the longest common token runs shared
    with `other_ids` (difflib's alignment): what the second prompt changed, inserted or lacks."""
    same = [False] * len(ids)
    matcher = SequenceMatcher(a=list(ids), b=list(other_ids), autojunk=False)
    for block in matcher.get_matching_blocks():
        same[block.a:block.a + block.size] = [True] * block.size
    return [not s for s in same]


def axis_labels(tokens: Sequence[str]) -> list[str]:
    """Unique axis labels for plots: position index plus token (Plotly merges equal labels)."""
    return [f"{i}: {tok}" for i, tok in enumerate(tokens)]
