"""Inputs of an analysis, described once: a page draws its form from them, an API can build its
request schema from them, and neither has to repeat labels, defaults, limits or help text.

An `InputField` names the keyword argument it fills, how it is asked for (free text, a choice or
several, a bounded number, a flag), where it sits in the form (row and column), and when it is asked at all (only
when another field has a given value). `values_from_answers` turns the raw answers into the
keyword arguments the analysis takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INPUT_KINDS = ("text", "long_text", "slider", "integer", "number", "choice", "radio",
               "multi_choice", "flag")


@dataclass(frozen=True)
class InputField:
    """One input: `argument` is the analysis's keyword it fills; `key` names it in a form's
    state (stable across renames of the argument). `shown_when` = (other key, values): asked
    only when the other field's answer is one of the values. `empty_means_none`: a blank answer passes None (an optional text)."""

    argument: str
    label: str
    default: Any
    kind: str = "text"
    key: str = ""
    choices: tuple = ()
    choice_labels: Mapping[Any, str] = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    row: int = 0
    column: int = 0
    help: str | None = None
    empty_means_none: bool = False
    shown_when: tuple[str, tuple] | None = None
    number_format: str | None = None  # printf-style, e.g. "%.0e" for a small rate

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"Unknown input kind {self.kind!r}; valid: {', '.join(INPUT_KINDS)}.")
        if not self.key:
            object.__setattr__(self, "key", self.argument)

    def label_of(self, choice) -> str:
        """How a choice is shown (its label, or itself)."""
        return self.choice_labels.get(choice, str(choice))


def is_asked(input_field: InputField, answers: Mapping[str, Any]) -> bool:
    """Whether the field is part of the form given the answers so far (keyed by `key`)."""
    if input_field.shown_when is None:
        return True
    other, values = input_field.shown_when
    return answers.get(other) in values


def typed_answer(input_field: InputField, answer):
    """The answer as the analysis takes it: whole numbers for sliders and integers, floats for
    numbers, None for a blank optional text."""
    if input_field.kind in ("slider", "integer") and isinstance(input_field.default, int):
        return int(answer)
    if input_field.kind in ("slider", "number"):
        return float(answer)
    if input_field.kind == "flag":
        return bool(answer)
    if input_field.kind == "multi_choice":
        return list(answer)
    if input_field.empty_means_none and not str(answer or "").strip():
        return None
    return answer


def values_from_answers(fields: Sequence[InputField], answers: Mapping[str, Any]) -> dict:
    """Keyword arguments for the analysis from the answers (keyed by `key`); fields not asked
    keep the analysis's own default by being left out."""
    return {f.argument: typed_answer(f, answers[f.key]) for f in fields
            if is_asked(f, answers) and f.key in answers}
