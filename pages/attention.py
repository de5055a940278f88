"""Attention: where does each head look, and what kind of head is it?"""

from __future__ import annotations

import streamlit as st

from interp import attention as att
from interp.errors import InterpError
from interp.explain import md_escape
from interp.figures.attention import GRID_CELL_CAP, LAYER_CAP, ZOOM_CAP
from interp.tokens import axis_labels
from pages import kit

ACTION = "Show attention"
P = "attention."


def ask(widget, label: str, name: str, default, **options):
    return kit.remembered(widget, label, P + name, default, **options)


def grid_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    layer, _ = at
    highlight = [(h.layer, h.head) for h in att.find_heads(run.scores, kind, threshold)]
    shown = kit.show(run.patterns, key=side.key(P + "grid"), view="grid", weighting=weighting,
                     highlight=highlight)
    kit.export_buttons(run.patterns, shown, key=side.key(P + "export.patterns"),
                       name="attention_patterns")
    st.markdown(f"**Layer {layer} in full**")
    kit.show(run.patterns, key=side.key(P + "layer"), view="layer", layer=layer,
             weighting=weighting)


def head_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    layer, head = at
    shown = kit.show(run.patterns, key=side.key(P + "head"), view="head", layer=layer,
                     head=head, weighting=weighting)
    kit.export_buttons(run.patterns, shown, key=side.key(P + "export.head"),
                       name=shown.name)


def lines_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    layer, head = at
    averaged = ask(st.toggle, "Average every head of the layer", side.key("lines_average"), False)
    kit.show(run.patterns, key=side.key(P + "lines"), view="lines", layer=layer,
             head=None if averaged else head, weighting=weighting)


def token_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    labels = axis_labels(run.patterns.tokens)
    position = int(ask(st.selectbox, "Token", side.key("position"), len(labels) - 1,
                       options=list(range(len(labels))), format_func=labels.__getitem__))
    kit.show(run.patterns, key=side.key(P + "from"), view="from_token", position=position,
             weighting=weighting)
    kit.show(run.patterns, key=side.key(P + "to"), view="to_token", position=position,
             weighting=weighting)


def scores_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    shown = kit.show(run.scores, key=side.key(P + "scores"), kind=kind, threshold=threshold)
    kit.export_buttons(run.scores, shown, key=side.key(P + "export.scores"), name="head_scores")
    table = att.head_score_table(run.scores, kind, threshold if only_passing else None)
    kit.export_buttons(table, kit.show(table, key=side.key(P + "table")),
                       key=side.key(P + "export.table"), name="head_scores_table")


def flow_tab(run: att.AttentionRun, side: kit.Side, signature: tuple,
             at: tuple[int, int]) -> None:
    layer, head = at
    fusion = ask(st.radio, "Combine a layer's heads by", side.key("fusion"), "mean",
                 options=list(att.HEAD_FUSIONS), horizontal=True)
    rollout = kit.run_and_remember(side.key(P + "rollout"), (*signature, fusion),
                                   att.attention_rollout, run.patterns, head_fusion=fusion)
    shown = kit.show(rollout, key=side.key(P + "rollout"), layer=layer)
    kit.export_buttons(rollout, shown, key=side.key(P + "export.rollout"))
    if run.patterns.n_tokens > att.MAX_FLOW_TOKENS:
        st.info(f"Attention flow is computed for inputs of at most {att.MAX_FLOW_TOKENS} tokens "
                f"(one max-flow per cell); this prompt has {run.patterns.n_tokens}. Rollout "
                "above has no limit.")
        return
    flow = kit.result_on_click(side.key(P + "flow"), (*signature, fusion),
                               st.button("Compute attention flow", key=side.key(P + "flow.run")),
                               "Compute attention flow", att.attention_flow, run.patterns,
                               att.RESIDUAL_WEIGHT, fusion)
    if flow is not None:
        kit.export_buttons(flow, kit.show(flow, key=side.key(P + "flow")),
                           key=side.key(P + "export.flow"))


TABS = {"Grid": grid_tab, "One head": head_tab, "Lines": lines_tab, "Per token": token_tab,
        "Head scores": scores_tab, "Rollout and flow": flow_tab}


def view(side: kit.Side) -> None:
    key = side.key(P + "results")
    signature = side.signature(weighting, int(repeat_length), int(seed))
    run = kit.result_on_click(key, signature, clicked or kit.last_result(key) is None, ACTION,
                              att.run_attention, side.model, side.prompt,
                              weighting == "value_norm", int(repeat_length), int(seed))
    if run is None:
        st.caption(f"Press {ACTION} to run the model on the prompt.")
        return
    at = (min(layer, run.patterns.n_layers - 1), min(head, run.patterns.n_heads - 1))
    if at != (layer, head):
        st.info(f"{md_escape(run.patterns.model_label)} has no head "
                f"{att.head_label(layer, head)}; showing {att.head_label(*at)}.")
    with kit.reported_errors():
        if run.patterns.n_tokens > GRID_CELL_CAP:
            st.caption(f"{run.patterns.n_tokens} tokens: the grid shows block means (at most "
                       f"{GRID_CELL_CAP} cells a side per head); the selected head is drawn in "
                       f"full up to {ZOOM_CAP} tokens, the selected layer up to {LAYER_CAP}.")
        for tab, draw in zip(st.tabs(list(TABS)), TABS.values(), strict=True):
            with tab:
                draw(run, side, signature, at)
        kit.explain_panel(run.patterns, key=side.key(P + "explain"), scores=run.scores)


def difference_view() -> None:
    """In compare mode: the chosen head's second-minus-first map when the tokens align."""
    first, second = (kit.last_result(P + "results" + suffix) for suffix in ("", ".b"))
    if first is None or second is None:
        return
    st.subheader(f"Difference at {att.head_label(layer, head)}")
    problem = att.alignment_problem(first.patterns, second.patterns, layer, head)
    if problem:
        st.info(md_escape(problem))
        return
    with kit.reported_errors():
        diff = att.attention_difference(first.patterns, second.patterns, layer, head)
        kit.export_buttons(diff, kit.show(diff, key=P + "difference"), key=P + "export.difference")


kit.require_app_shell()
st.title("Attention")
kit.how_to_read()
st.write("Where does each head look, and what kind of head is it? One forward pass records "
         "every head's attention on the prompt; a second, on a repeated random-token sequence, "
         "scores each head as a previous-token, duplicate-token, induction or sink head.")
# The selectors need the model's shape; for_each_side loads it again (shared, so at once) and
# shows its notes, so this first load's own notes are cleared once it has succeeded.
loading = st.empty()
with loading.container():
    model = kit.load_chosen_model()
loading.empty()
left, middle, right = st.columns([2, 1, 1])
weighting = ask(left.radio, "Show", "weighting", "attention", options=list(att.WEIGHTINGS),
                format_func=att.WEIGHTING_LABELS.get, horizontal=True,
                help="Value-weighted norms scale each weight by how much the head moves from "
                     "that token (Kobayashi et al. 2020): a large weight on an empty token fades.")
longest = att.longest_repeat(model)
repeat_length = ask(middle.slider, "Random tokens, repeated", "repeat_length",
                    min(att.DEFAULT_REPEAT_LENGTH, longest), min_value=att.MIN_REPEAT_LENGTH,
                    max_value=longest,
                    help="Length of the random-token sequence written twice for the "
                         "duplicate-token and induction scores.")
seed = ask(right.number_input, "Seed", "seed", att.DEFAULT_SEED, min_value=0, step=1)
info = model.info
left, middle, right, far = st.columns([1, 1, 2, 2])  # the score's label needs the room
layer = int(ask(left.selectbox, "Layer", "layer", 0, options=list(range(info.n_layers))))
head = int(ask(middle.selectbox, "Head", "head", 0, options=list(range(info.n_heads))))
kind = ask(right.selectbox, "Head score", "kind", "previous_token", options=list(att.SCORE_KINDS),
           format_func=att.SCORE_LABELS.get)
threshold = float(ask(far.slider, "Threshold", "threshold", att.NOTABLE_THRESHOLDS["previous_token"],
                      min_value=0.0, max_value=5.0 if kind in att.LOW_IS_NOTABLE else 1.0,
                      step=0.05,
                      help="Heads passing it are outlined in the grid and the score map (at "
                           "least it; at most it for entropy)."))
only_passing = ask(st.checkbox, "Table: only heads passing the threshold", "only_passing", False)
clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/visibility:")
try:
    kit.for_each_side(view)
    if kit.compare_mode(kit.current_page(view)) is not None:
        difference_view()
except InterpError as error:
    kit.show_error(error)
