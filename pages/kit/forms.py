"""Forms drawn from `interp.inputs.InputField` descriptions: remembered widgets, row by row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

from interp.inputs import InputField, is_asked, values_from_answers
from pages.kit.state import remembered

WIDGETS = {"text": "text_input", "long_text": "text_area", "slider": "slider",
           "integer": "number_input", "number": "number_input", "choice": "selectbox",
           "radio": "radio", "multi_choice": "multiselect", "flag": "checkbox"}


def widget_options(input_field: InputField) -> dict:
    """Streamlit's keyword arguments for the field's widget (limits, choices, size)."""
    limits = {"min_value": input_field.minimum, "max_value": input_field.maximum,
              "step": input_field.step}
    if input_field.kind == "long_text":
        return {"height": 80}
    if input_field.kind in ("slider", "integer", "number"):
        shown = {"format": input_field.number_format} if input_field.number_format else {}
        return {name: value for name, value in limits.items() if value is not None} | shown
    if input_field.kind in ("choice", "radio", "multi_choice"):
        return {"options": list(input_field.choices), "format_func": input_field.label_of}
    return {}


def input_form(fields: Sequence[InputField], prefix: str,
               defaults: Mapping[str, object] | None = None) -> dict:
    """Ask `fields` (kept in session state under `prefix` + key, each row's fields side by side,
    a field shown only when its condition holds); returns the analysis's keyword arguments.
    `defaults` replaces fields' defaults by key (e.g. the sidebar's prompt)."""
    defaults = defaults or {}
    answers: dict[str, object] = {}
    for row in sorted({f.row for f in fields}):
        in_row = [f for f in fields if f.row == row]
        width = max(f.column for f in in_row) + 1
        places = st.columns(width) if width > 1 else [st]
        for input_field in in_row:
            if not is_asked(input_field, answers):
                continue
            widget = getattr(places[input_field.column], WIDGETS[input_field.kind])
            answers[input_field.key] = remembered(
                widget, input_field.label, prefix + input_field.key,
                defaults.get(input_field.key, input_field.default), help=input_field.help,
                **widget_options(input_field))
    return values_from_answers(fields, answers)
