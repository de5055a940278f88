"""Checking a prompt before any model runs on it, with the same rules on every page.

Empty prompts, prompts longer than the model's context window and control characters are refused
with a message that says what to change. Non-ASCII text and emoji are valid: GPT-2's byte-level
tokenizer encodes any text, and we only note that a character became several tokens.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import torch

from interp.errors import InvalidPromptError

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
    notes = []
    if any(ord(ch) > 127 for ch in text):
        split = [t for t in tokens if t.startswith("<") and t.endswith(">") and t not in ("<|endoftext|>",)]
        notes.append(
            "The prompt has non-ASCII characters; GPT-2 reads bytes, so some characters take "
            "several tokens" + (f" (shown in hex, e.g. {split[0]})." if split else "."))
    return CheckedPrompt(text=text, token_ids=tuple(ids), tokens=tuple(tokens), n_ctx=n_ctx,
                         notes=tuple(notes))
