"""Compare mode: a page's view drawn once, or twice side by side (two prompts or two models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from interp.explain import md_escape
from pages.kit.models import chosen_model_name, load_chosen_model, try_load_model
from pages.kit.registry import (
    COMPARE_INPUTS,
    COMPARE_MODELS,
    COMPARE_PROMPTS,
    compare_mode,
    current_page,
)
from pages.kit.state import Keys


@dataclass(frozen=True)
class Side:
    """One side of a page: the model and prompt it shows, and `suffix` for its widget keys
    (empty on the first side, so single mode keeps its plain keys). When two prompts are
    compared, `other_prompt` is the other side's, so a view can mark what differs."""

    model: object
    prompt: str
    suffix: str = ""
    compared: bool = False
    other_prompt: str | None = None

    def key(self, base: str) -> str:
        return base + self.suffix

    def signature(self, *options) -> tuple:
        """What a result on this side depends on: model, prompt, and the page's options."""
        return (self.model.name, self.prompt, *options)


def heading(side: Side, mode: str) -> None:
    if mode == COMPARE_INPUTS:
        what = f"Inputs: {'second' if side.suffix else 'first'} set"
    elif mode == COMPARE_MODELS:
        what = f"Model: {md_escape(side.model.info.label)}"
    else:
        what = f"Prompt: {md_escape(side.prompt)}"
    st.markdown(f"**{what}**")


def for_each_side(view: Callable[[Side], None],
                  shared: Callable[[object], None] | None = None) -> None:
    """Draw `view` once, or, in the compare mode this page supports, twice in two columns (the
    second prompt on the same model, or the same prompt on the second model).

    `shared(model)` draws what belongs to the model rather than to a side (a model card): once
    above the columns when both sides use the same model, else at the top of each side.
    """
    model = load_chosen_model()
    prompt = st.session_state.get(Keys.PROMPT, "")
    mode = compare_mode(current_page(view))
    one_model = mode != COMPARE_MODELS or chosen_model_name() == chosen_model_name(Keys.MODEL_B)
    if shared is not None and one_model:
        shared(model)
    if mode is None:
        view(Side(model, prompt))
        return
    second_prompt = st.session_state.get(Keys.PROMPT_B, "")
    per_side = None if one_model else shared
    left, right = st.columns(2)
    with left:
        first = Side(model, prompt, compared=True,
                     other_prompt=second_prompt if mode == COMPARE_PROMPTS else None)
        heading(first, mode)
        if per_side is not None:
            per_side(first.model)
        view(first)
    with right:
        if mode == COMPARE_PROMPTS:
            second = Side(model, second_prompt, ".b", compared=True, other_prompt=prompt)
        elif mode == COMPARE_INPUTS:
            second = Side(model, prompt, ".b", compared=True)
        else:
            second_model = try_load_model(Keys.MODEL_B)
            if second_model is None:
                return  # try_load_model said why, in this column
            second = Side(second_model, prompt, ".b", compared=True)
        heading(second, mode)
        if per_side is not None:
            per_side(second.model)
        view(second)
