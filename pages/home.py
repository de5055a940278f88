"""Home: the model card, how the prompt is tokenized, and what the model predicts next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp.export import to_json
from interp.figures.prediction import top_k_bars
from interp.predictions import NextTokenPrediction, next_token_topk
from interp.validation import check_prompt
from pages.common import (
    COMPARE_MODELS,
    PAGES,
    Keys,
    load_chosen_model,
    reported_errors,
    require_app_shell,
)

require_app_shell()
st.title("GPT-2 Interpretability Workbench")
st.write("See *why* GPT-2 says what it says. Choose a model and a prompt in the sidebar, then "
         "open an analysis page.")


def model_card(model) -> None:
    info = model.info
    st.subheader(info.label)
    columns = st.columns(6)
    for column, (name, value) in zip(columns, [
        ("Layers", info.n_layers), ("Heads", info.n_heads), ("d_model", info.d_model),
        ("Vocabulary", f"{info.d_vocab:,}"), ("Context", f"{info.n_ctx:,}"),
        ("Parameters", f"{info.n_params / 1e6:,.1f}M"),
    ], strict=True):
        column.metric(name, value)
    st.caption(f"{info.architecture} from `{info.source}` on {info.device}, {info.dtype}; "
               f"d_head {info.d_head}, d_mlp {info.d_mlp}.")


def tokenization(model, prompt: str) -> None:
    checked = check_prompt(prompt, model)
    st.markdown(f"**Tokens**: {checked.n_tokens} of {checked.n_ctx} "
                "(the first is the beginning-of-text token the model is trained to see first).")
    st.progress(min(checked.n_tokens / checked.n_ctx, 1.0))
    table = pd.DataFrame({"position": range(checked.n_tokens), "token": checked.tokens,
                          "id": checked.token_ids})
    st.dataframe(table, hide_index=True, height=min(38 + 35 * checked.n_tokens, 300))
    st.caption("␣ marks a leading space: GPT-2 has different tokens for ' Paris' and 'Paris'. "
               "↵ is a newline; <F0 9F> shows bytes that are only part of a character.")
    for note in checked.notes:
        st.info(note)


def prediction_view(model, prompt: str, k: int, key: str) -> NextTokenPrediction:
    prediction = next_token_topk(model, prompt, k)
    st.plotly_chart(top_k_bars(prediction), key=f"topk-{key}")
    st.caption(f"Bars are probabilities of the next token over the whole vocabulary; hover for "
               f"the logit. Entropy {prediction.entropy_nats:.2f} nats (lower = more certain).")
    st.download_button("Export JSON", to_json(prediction), file_name="next_token.json",
                       mime="application/json", key=f"export-{key}")
    return prediction


def column_for(model, prompt: str, k: int, key: str, side_by_side: bool) -> None:
    with reported_errors():
        model_card(model)
        if side_by_side:
            tokens_column, prediction_column = st.columns(2)
        else:
            tokens_column = prediction_column = st.container()
        with tokens_column:
            tokenization(model, prompt)
        with prediction_column:
            prediction_view(model, prompt, k, key)


model = load_chosen_model()
k = st.slider("How many next tokens to show", 3, 30, 10)
prompt = st.session_state.get(Keys.PROMPT, "")
if st.session_state.get(Keys.COMPARE):
    left, right = st.columns(2)
    with left:
        column_for(model, prompt, k, "a", side_by_side=False)
    with right:
        if st.session_state.get(Keys.COMPARE_MODE) == COMPARE_MODELS:
            column_for(load_chosen_model(Keys.MODEL_B), prompt, k, "b", side_by_side=False)
        else:
            column_for(model, st.session_state.get(Keys.PROMPT_B, ""), k, "b", side_by_side=False)
else:
    column_for(model, prompt, k, "a", side_by_side=True)

st.divider()
st.subheader("Analyses")
for entry in PAGES[1:]:
    st.page_link(entry.path, label=entry.title, icon=entry.icon)
    st.caption(entry.question)
