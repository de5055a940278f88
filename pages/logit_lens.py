"""Logit lens: what would the model predict if it stopped at layer L, and which components write
the answer? For the sidebar prompt, or for every token of a chat with the model."""

from __future__ import annotations

import streamlit as st

from interp.errors import InterpError
from interp.explain import md_escape
from interp.generation import chat_prompt, generate
from interp.logit_lens import (
    DLAResult,
    LensResult,
    colour_lens,
    direct_logit_attribution,
    lens_of_ids,
    resolve_token,
)
from interp.tokens import axis_labels
from pages import kit

ACTION = "Run logit lens"
P = "logit_lens."  # this page's session-state keys
TURNS = P + "chat.turns"
SOURCES = {"prompt": "The sidebar prompt", "chat": "A chat with the model"}
VIEWS = {"heatmap": "Heatmap", "table": "Table"}
NO_CONTRAST = "(none: the target's logit alone)"


def ask(widget, label: str, name: str, default, **options):
    return kit.remembered(widget, label, P + name, default, **options)


def choose_position(result: LensResult, key: str) -> int:
    labels = axis_labels(result.tokens)
    return int(kit.remembered(
        st.selectbox, "Position", key, len(labels) - 1, options=list(range(len(labels))),
        format_func=labels.__getitem__,
        help="Pick a token: its prediction's layer-by-layer evolution and its DLA below."))


def show_lens(result: LensResult, key: str, position: int, token_id: int | None) -> None:
    if result.note:
        st.info(md_escape(result.note))
    view = st.session_state[P + "view"]
    options = {"view": view, "position": position} | (
        {"token_id": token_id} if view == "heatmap" else {})
    shown = kit.show(result, key=f"{key}.{view}", **options)
    kit.export_buttons(result, shown, key=f"{key}.export")
    st.subheader("Layer by layer")
    evolution = kit.show(result, key=f"{key}.evolution", view="evolution", position=position,
                         token_id=token_id)
    kit.export_buttons(result, evolution, key=f"{key}.export.evolution")
    kit.explain_panel(result, key=f"{key}.explain", position=position)


@st.fragment
def dla_view(model, prompt: str, result: LensResult, position: int, key: str) -> None:
    """DLA of one of the final top-k candidates at `position`, against an optional contrast."""
    st.subheader("Who writes the answer: direct logit attribution")
    candidates = [int(t) for t in result.candidate_ids[position].tolist()]
    names = {t: f"{result.text_of(t)} (p = {result.candidate_log_probs[-1, position, i].exp():.3f})"
             for i, t in enumerate(candidates)}
    left, right = st.columns(2)
    target = left.selectbox("Target token", candidates, format_func=names.get,
                            key=f"{key}.target.{position}")
    contrast_text = right.text_input("Contrast token (optional)", key=f"{key}.contrast",
                                     value="", help="One token, e.g. ' John': DLA then splits "
                                     "the difference of the two logits.")
    try:
        contrast = resolve_token(model, contrast_text, "contrast") if contrast_text else None
        dla = kit.run_and_remember(f"{key}.result", (model.name, prompt, target, contrast),
                                   direct_logit_attribution, model, prompt, target, contrast)
    except InterpError as error:
        kit.show_error(error)
        return
    show_dla(dla, key, position)


def show_dla(dla: DLAResult, key: str, position: int) -> None:
    total = float(dla.logit[position])
    parts = float(dla.contributions[position].sum())
    st.markdown(f"**{md_escape(dla.metric_label)}** after position {position}:")
    kit.metric_row({"The model's value": f"{total:.3f}", "Sum of the parts": f"{parts:.3f}"})
    shown = kit.show(dla, key=f"{key}.bars", view="bars", position=position)
    kit.export_buttons(dla, shown, key=f"{key}.export.bars")
    shown = kit.show(dla, key=f"{key}.heads", view="heads", position=position)
    kit.export_buttons(dla, shown, key=f"{key}.export.heads")
    kit.explain_panel(dla, key=f"{key}.explain", position=position)


def view(side: kit.Side) -> None:
    """The prompt source: lens on a click, then its views and DLA at the chosen position."""
    key = side.key(P + "lens")
    signature = side.signature(k, colour)
    result = kit.result_on_click(key, signature, clicked, ACTION, colour_lens, side.model,
                                 side.prompt, k, colour)
    if result is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    with kit.reported_errors():
        position = choose_position(result, side.key(P + "position"))
        token_id = result.tracked_ids[0] if result.tracked_ids else None
        show_lens(result, key, position, token_id)
        dla_view(side.model, result.prompt, result, position, side.key(P + "dla"))


# ---------------------------------------------------------------------------------------------
# Chat
# ---------------------------------------------------------------------------------------------

def clear_conversation() -> None:
    st.session_state[TURNS] = []
    for name in ("chat.turn", "chat.token"):
        kit.forget(P + name)


def generation_options() -> dict:
    with st.expander("Sampling"):
        left, middle, right, last = st.columns(4)
        return {
            "max_new_tokens": int(ask(left.number_input, "Max new tokens", "max_new_tokens", 20,
                                      min_value=1, max_value=40)),
            "temperature": float(ask(middle.slider, "Temperature (0 = greedy)", "temperature",
                                     0.7, min_value=0.0, max_value=2.0, step=0.1)),
            "top_p": float(ask(right.slider, "Top p", "top_p", 0.9, min_value=0.05,
                               max_value=1.0, step=0.05)),
            "seed": int(ask(last.number_input, "Seed", "seed", 0, min_value=0, step=1)),
        }


def answer(model, turns: list[dict], options: dict) -> None:
    """Stream the model's reply to the conversation so far and keep it as the next turn."""
    prompt = chat_prompt([(turn["role"], turn["text"]) for turn in turns])
    generation = generate(model, prompt, **options)
    with st.chat_message("assistant"):
        if generation.note:
            st.caption(md_escape(generation.note))
        st.write_stream(generation.text_stream())
    turns.append({"role": "Assistant", "text": generation.text.strip(),
                  "prompt_ids": list(generation.prompt_ids),
                  "token_ids": [t.token_id for t in generation.tokens],
                  "note": generation.note, "stop": generation.stop_reason})


def show_history(turns: list[dict]) -> None:
    for turn in turns:
        with st.chat_message("user" if turn["role"] == "User" else "assistant"):
            if turn.get("note"):
                st.caption(md_escape(turn["note"]))
            st.markdown(md_escape(turn["text"]) or "*(no reply: the model ended its turn at once)*")


def chat_token_lens(model, turns: list[dict]) -> None:
    """Pick a generated token: the lens of the context that produced it, at its position."""
    replies = [i for i, turn in enumerate(turns) if turn.get("token_ids")]
    if not replies:
        return
    st.subheader("The lens of a generated token")
    chosen = ask(st.selectbox, "Reply", "chat.turn", replies[-1], options=replies,
                 format_func=lambda i: f"Reply {replies.index(i) + 1}: "
                 f"{turns[i]['text'][:40]}")
    turn = turns[chosen]
    pieces = model.display_tokens(turn["token_ids"])
    index = int(ask(st.pills if len(pieces) <= 40 else st.selectbox, "Generated token",
                    "chat.token", 0, options=list(range(len(pieces))),
                    format_func=lambda i: f"{i}: {pieces[i]}") or 0)
    ids = turn["prompt_ids"] + turn["token_ids"][:index]
    generated = turn["token_ids"][index]
    result = kit.run_and_remember(P + "chat.lens", (model.name, tuple(ids), generated, k),
                                  lens_of_ids, model, ids, k=k, track=(generated,),
                                  truncate_left=True)
    st.caption(f"Position {result.n_positions - 1} predicted the generated token "
               f"{md_escape(pieces[index])}; colour is that token's probability.")
    show_lens(result, P + "chat", result.n_positions - 1, generated)


def chat(model) -> None:
    turns = st.session_state.setdefault(TURNS, [])
    options = generation_options()
    st.button("Clear conversation", on_click=clear_conversation, key=P + "chat.clear",
              icon=":material/delete:")
    show_history(turns)
    message = st.chat_input("Write to the model")
    if message and message.strip():
        turns.append({"role": "User", "text": message.strip()})
        with st.chat_message("user"):
            st.markdown(md_escape(message.strip()))
        try:
            answer(model, turns, options)
        except InterpError as error:
            turns.pop()
            kit.show_error(error)
            return
        kit.forget(P + "chat.turn")
        kit.forget(P + "chat.token")
    with kit.reported_errors():
        chat_token_lens(model, turns)


kit.require_app_shell()
st.title("Logit lens")
kit.how_to_read()
st.write("Read the residual stream after every layer through the model's final LayerNorm and "
         "unembedding, as if the model stopped there: where does its prediction form? Then split "
         "the final logit into what each head and MLP wrote.")
source = ask(st.radio, "Read", "source", "prompt", options=list(SOURCES),
             format_func=SOURCES.get, horizontal=True)
left, middle, right = st.columns(3)
ask(left.radio, "View", "view", "heatmap", options=list(VIEWS), format_func=VIEWS.get,
    horizontal=True)
k = int(ask(middle.slider, "Top k", "k", 5, min_value=1, max_value=10))
colour = ask(right.text_input, "Colour by token (optional)", "colour", "",
             help="One token of text, e.g. ' Mary' (GPT-2 tokens often start with a space): "
                  "the heatmap shows its probability.") if source == "prompt" else ""
st.caption("The tuned lens (a learned map per layer that corrects the early layers' bias) is out "
           "of scope: early rows here are the plain logit lens, read with the final layer's "
           "LayerNorm and unembedding.")
if source == "prompt":
    clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/play_arrow:")
    kit.for_each_side(view)
else:
    if st.session_state.get(kit.Keys.COMPARE):
        st.info("Compare mode applies to the prompt view; the chat runs on the first model.")
    chat(kit.load_chosen_model())
