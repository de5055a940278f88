"""Checking a prompt before any model runs on it, with the same rules on every page.

Empty prompts, prompts longer than the model's context window and control characters are refused
with a message that says what to change. Non-ASCII text and emoji are valid: a byte-level
tokenizer (GPT-2's, the demo model's) encodes any text, and we only note that a character became
several tokens. Special-token text typed into a prompt (`<|endoftext|>`) is noted too, because
the tokenizer reads it as the special token, not as the characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import torch

from interp.errors import InvalidPromptError
from interp.tokens import reads_bytes, special_tokens_in

ALLOWED_CONTROL = {"\n", "\t"}


@dataclass(frozen=True)
class CheckedPrompt:
    """A prompt that passed validation, with its tokens (BOS first when the model uses one)."""

    text: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    n_ctx: int
    notes: tuple[str, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.token_ids])


def control_characters(text: str) -> list[str]:
    """Describe each control character (other than newline and tab) with its position."""
    found = []
    for index, ch in enumerate(text):
        if ch not in ALLOWED_CONTROL and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            name = unicodedata.name(ch, "control character")
            found.append(f"U+{ord(ch):04X} ({name.lower()}) at character {index + 1}")
    return found


def check_prompt(text: str | None, model, label: str = "The prompt") -> CheckedPrompt:
    """Validate `text` for `model` (a `LoadedModel`) and tokenize it, or raise InvalidPromptError."""
    if text is None or not text.strip():
        raise InvalidPromptError(f"{label} is empty. Type some text to analyse.")
    bad = control_characters(text)
    if bad:
        shown = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise InvalidPromptError(
            f"{label} contains control characters the model never saw in training: {shown}. "
            "Remove them (newlines and tabs are fine).")
    ids = model.to_tokens(text)[0].tolist()
    n_ctx = model.info.n_ctx
    if len(ids) > n_ctx:
        raise InvalidPromptError(
            f"{label} is {len(ids)} tokens long, but {model.info.label} reads at most {n_ctx}. "
            f"Shorten it by {len(ids) - n_ctx} tokens.")
    tokens = model.display_tokens(ids)
    notes = special_token_notes(model.tokenizer, text)
    if any(ord(ch) > 127 for ch in text):
        notes.append(non_ascii_note(model.tokenizer, ids, tokens))
    return CheckedPrompt(text=text, token_ids=tuple(ids), tokens=tuple(tokens), n_ctx=n_ctx,
                         notes=tuple(notes))


def special_token_notes(tokenizer, text: str) -> list[str]:
    """A note for each special token typed as text: the tokenizer reads it as that token."""
    notes = []
    boundaries = {tokenizer.bos_token, tokenizer.eos_token} - {None}
    for special in special_tokens_in(tokenizer, text):
        meaning = (": the model sees a document boundary there" if special in boundaries else "")
        notes.append(
            f"The prompt contains the text {special}, which the model's tokenizer reads as its "
            f"special token (id {tokenizer.convert_tokens_to_ids(special)}), not as the "
            f"characters typed{meaning}. Remove it, or write it differently, if you meant the "
            "characters.")
    return notes


def non_ascii_note(tokenizer, ids: list[int], tokens: list[str]) -> str:
    """What the model's tokenizer does with characters outside ASCII."""
    if reads_bytes(tokenizer):
        specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
        split = [t for t in tokens if t.startswith("<") and t.endswith(">") and t not in specials]
        return ("The prompt has non-ASCII characters; the model's tokenizer reads bytes "
                "(byte-level BPE, as GPT-2's does), so some characters take several tokens"
                + (f" (shown in hex, e.g. {split[0]})." if split else "."))
    unknown = tokenizer.unk_token_id
    lost = unknown is not None and unknown in ids
    return ("The prompt has non-ASCII characters; the model's tokenizer does not read bytes, so "
            "some characters may take several tokens"
            + (f", and characters it does not know became its unknown token "
               f"{tokenizer.unk_token}." if lost else "."))
