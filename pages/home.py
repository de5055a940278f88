"""Home: the model card, how the prompt is tokenized, and what the model predicts next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp import known_results
from interp.caching import shared_model
from interp.explain import md_escape
from interp.models import MODEL_REGISTRY
from interp.predictions import NextTokenPrediction, next_token_topk
from interp.tokens import differing_tokens
from interp.validation import check_prompt
from pages import kit

kit.require_app_shell()
st.title("GPT-2 Interpretability Workbench")
st.write("See *why* GPT-2 says what it says. Choose a model and a prompt in the sidebar, then "
         "open an analysis page.")


@kit.cached_across_sessions
def shared_prediction(model_name: str, prompt: str, k: int) -> NextTokenPrediction:
    """Two visitors asking the same model about the same prompt share one forward pass."""
    return next_token_topk(shared_model(model_name), prompt, k)


def model_card(model) -> None:
    info = model.info
    # A registered model's label is ours; any other is the id or folder the user typed.
    st.subheader(info.label if info.name in MODEL_REGISTRY else md_escape(info.label))
    # Two rows of three: six metrics in one row of a half-width (compare) or 800 px page are cut.
    figures = [("Layers", info.n_layers), ("Heads", info.n_heads), ("d_model", info.d_model),
               ("Vocabulary", f"{info.d_vocab:,}"), ("Context", f"{info.n_ctx:,}"),
               ("Parameters", info.params_label)]
    for row in (figures[:3], figures[3:]):
        for column, (name, value) in zip(st.columns(3), row, strict=True):
            column.metric(name, value)
    st.caption(f"{md_escape(info.architecture)} from {md_escape(info.shown_source)} on {info.device}, "
               f"{info.dtype}; d_head {info.d_head}, d_mlp {info.d_mlp}.")
    known_results_panel(model)


def known_results_panel(model) -> None:
    """Published findings on GPT-2 small, rerun on this model: offered for real GPT-2 only."""
    with st.expander("Known results: does this reproduce the papers on GPT-2 small?"):
        real, why = known_results.gpt2_small_identity(model)
        if not real:
            st.caption(f"Not available for this model: {md_escape(why)}. With GPT-2 small "
                       "loaded, this reruns induction heads, IOI's circuit, causal tracing and "
                       "the logit lens against their papers (`python -m interp.known_results`).")
            return
        action = "Run the known-results checks"
        report = kit.result_on_click("home.known_results", (model.name,),
                                     st.button(action, key="home.known_results.run"), action,
                                     known_results.known_results, model)
        if report is not None:
            st.dataframe(pd.DataFrame([vars(row) for row in report.rows]), hide_index=True)
            st.caption(f"{report.seconds:.0f} s; weights sha256 {report.weights_sha256[:16]}...")


def highlighted(table: pd.DataFrame):
    """The token table with the rows that differ from the other prompt shaded."""
    shade = "background-color: rgba(255, 196, 0, 0.35)"
    return table.style.apply(
        lambda row: [shade if row["differs"] else ""] * len(row), axis=1)


def tokenization(model, prompt: str, other_prompt: str | None = None) -> None:
    checked = check_prompt(prompt, model)
    st.markdown(f"**Tokens**: {checked.n_tokens} of {checked.n_ctx} "
                "(the first is the beginning-of-text token the model is trained to see first).")
    st.progress(min(checked.n_tokens / checked.n_ctx, 1.0))
    table = pd.DataFrame({"position": range(checked.n_tokens), "token": checked.tokens,
                          "id": checked.token_ids})
    height = min(38 + 35 * checked.n_tokens, 600)
    if other_prompt is None:
        st.dataframe(table, hide_index=True, height=height)
    else:
        table["differs"] = differing_tokens(checked.token_ids, model.to_tokens(other_prompt)[0].tolist())
        st.dataframe(highlighted(table), hide_index=True, height=height)
        st.caption(f"Shaded: {int(table['differs'].sum())} token(s) that the other prompt does "
                   "not share (aligned on their longest common runs of tokens).")
    st.caption("␣ marks a leading space: GPT-2 has different tokens for ' Paris' and 'Paris'. "
               "↵ is a newline; <F0 9F> shows bytes that are only part of a character.")
    for note in checked.notes:
        st.info(note)


def view(side: kit.Side) -> None:
    with kit.reported_errors():
        if side.compared:
            tokens_column = prediction_column = st.container()
        else:
            tokens_column, prediction_column = st.columns(2)
        with tokens_column:
            tokenization(side.model, side.prompt, side.other_prompt)
        with prediction_column:
            prediction = kit.run_and_remember(side.key("home.prediction"), side.signature(k),
                                              shared_prediction, side.model.name, side.prompt, k)
            shown = kit.show(prediction, key=side.key("home.topk"))
            kit.export_buttons(prediction, shown, key=side.key("home.export"))


k = st.slider("How many next tokens to show", 3, 30, 10)
kit.for_each_side(view, shared=model_card)

st.divider()
st.subheader("Analyses")
for entry in kit.PAGES[1:]:
    st.page_link(entry.path, label=entry.title, icon=entry.icon)
    st.caption(entry.question)
