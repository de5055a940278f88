"""Attribution: which input tokens made the model predict this, and which method to trust here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp.attribution import ATTRIBUTION_METHODS, method_options
from interp.attribution.gradients import BASELINES
from interp.attribution.lrp import LRP_VARIANTS
from interp.attribution.perturbation import OCCLUSION_MODES
from interp.attribution.reporting import faithfulness_rows
from interp.attribution.runs import AttributionRun, run_attribution
from interp.attribution.shap_values import EXPLAINERS
from interp.errors import InterpError
from interp.explain import md_escape
from pages import kit

ACTION = "Run attribution"
P = "attribution."  # this page's session-state keys; inputs persist across pages
DEFAULT_METHODS = ["integrated_gradients", "gradient_x_input", "lrp", "occlusion"]
TARGET_LABELS = {"predicted": "Predicted next token", "token": "A chosen token",
                 "contrast": "Contrast of two tokens", "continuation": "Generated continuation"}
# The options offered per method, with the widget that asks for each (others keep defaults).
OPTION_CHOICES = {
    ("integrated_gradients", "baseline"): list(BASELINES), ("shap", "explainer"): list(EXPLAINERS),
    ("occlusion", "mode"): list(OCCLUSION_MODES), ("lrp", "variant"): list(LRP_VARIANTS),
}
NUMBER_OPTIONS = {("integrated_gradients", "n_steps"): (2, 512),
                  ("shap", "max_evals"): (10, 5000), ("occlusion", "n_neighbours"): (1, 20)}
TEXT_OPTIONS = {("shap", "replacement"), ("occlusion", "replacement")}


def ask(widget, label: str, name: str, default, **options):
    return kit.remembered(widget, label, P + name, default, **options)


def method_option_inputs(methods: list[str]) -> dict[str, dict]:
    """The options of each chosen method that the page offers, as the user set them."""
    chosen: dict[str, dict] = {}
    with st.expander("Method options"):
        for method in methods:
            defaults = method_options(method)
            offered = [name for name in defaults if (method, name) in OPTION_CHOICES
                       or (method, name) in NUMBER_OPTIONS or (method, name) in TEXT_OPTIONS]
            if not offered:
                continue
            st.markdown(f"**{method}**")
            columns = st.columns(2)  # two a row: in narrower columns the values are cut off
            values = {}
            for index, name in enumerate(offered):
                column = columns[index % 2]
                key, default = f"option.{method}.{name}", defaults[name]
                if (method, name) in OPTION_CHOICES:
                    values[name] = ask(column.selectbox, name, key, default,
                                       options=OPTION_CHOICES[method, name])
                elif (method, name) in NUMBER_OPTIONS:
                    low, high = NUMBER_OPTIONS[method, name]
                    values[name] = int(ask(column.number_input, name, key, int(default),
                                           min_value=low, max_value=high, step=1))
                else:
                    typed = ask(column.text_input, f"{name} (one token; empty: end-of-text)",
                                key, "")
                    values[name] = typed or None
            chosen[method] = values
        st.caption("SHAP's Partition explainer returns Owen values over a tree of token spans; "
                   "Exact returns Shapley values (2^n forward passes, short prompts only).")
    return chosen


def target_inputs():
    """What to explain, in the form `resolve_target` reads."""
    kind = ask(st.radio, "Explain", "target_kind", "predicted", options=list(TARGET_LABELS),
               format_func=TARGET_LABELS.get, horizontal=True)
    left, right = st.columns(2)
    if kind == "token":
        return ask(left.text_input, "Token (one token, e.g. ' Mary')", "target_token", " Mary")
    if kind == "contrast":
        token = ask(left.text_input, "Token", "contrast_token", " Mary")
        other = ask(right.text_input, "minus token", "contrast_other", " John")
        return (token, other)
    if kind == "continuation":
        n = ask(left.number_input, "Tokens to generate", "continuation_n", 3, min_value=1,
                max_value=8, step=1)
        return {"continuation": int(n)}
    return None


def check_inputs() -> tuple[bool, bool, bool, None, bool]:
    """The checks to run, in `run_attribution`'s order (perturbation options left default)."""
    # Two columns: four checkbox labels in four columns are cut off in an 800 px window.
    left, right = st.columns(2)
    faithful = ask(left.checkbox, "Faithfulness curves", "faithfulness", True,
                   help="Deletion and insertion curves, against random token orders.")
    sanity = ask(right.checkbox, "Sanity check (slow)", "sanity", False,
                 help="Recompute with the top layers' weights randomised, on a private copy.")
    perturb = ask(left.checkbox, "Perturbation analysis", "perturb", True,
                  help="Edit each token and show what the model now writes.")
    flow = ask(right.checkbox, "Layer-wise flow (LRP)", "flow", True)
    return faithful, sanity, perturb, None, flow


def faithfulness_view(run: AttributionRun, side: kit.Side) -> None:
    st.subheader("Faithfulness: which map to trust here")
    header, rows = faithfulness_rows(run)
    table = pd.DataFrame(rows, columns=header)
    st.dataframe(table[["method", "deletion_aopc", "random_deletion_aopc", "insertion_aopc",
                        "random_insertion_aopc", "comprehensiveness_20%", "sufficiency_20%",
                        "sanity_spearman"]], hide_index=True, key=side.key(P + "faith.table"))
    st.caption("AOPC: the mean fall of the target as the method's top tokens are masked "
               "(deletion) or its mean rise as they are unmasked (insertion); beside each, the "
               "same for random orders. Higher than random = the map points at tokens that "
               "matter. Comprehensiveness/sufficiency at the top 20% of tokens: the target's drop "
               "with them masked (higher is better) or with only them kept (lower is better).")
    shown = kit.show(run, key=side.key(P + "faith"), view="faithfulness")
    kit.export_buttons(run, shown, key=side.key(P + "export.faith"),
                       name="attribution_faithfulness", csv_options={"view": "faithfulness"})


def show_run(run: AttributionRun, side: kit.Side) -> None:
    st.markdown(f"Explaining **{md_escape(run.target.label)}** ({run.target.kind}).")
    for method, message in run.failures.items():
        st.warning(f"{md_escape(method)} failed: {md_escape(message)}")
    shown = kit.show(run, key=side.key(P + "methods"), view="methods")
    kit.export_buttons(run, shown, key=side.key(P + "export.methods"), name="attribution",
                       csv_options={"view": "scores"})
    with st.expander("Each method on its own"):
        for result in run.results:
            st.markdown(f"**{md_escape(result.method)}**: {md_escape(result.description)}")
            one = kit.show(result, key=side.key(f"{P}one.{result.method}"))
            kit.export_buttons(result, one, key=side.key(f"{P}export.one.{result.method}"))
            for note in result.notes:
                st.caption(md_escape(note))
    if run.faithfulness:
        faithfulness_view(run, side)
    if run.correlations is not None:
        st.subheader("Do the methods agree?")
        kit.show(run, key=side.key(P + "corr"), view="correlations")
    if run.sanity:
        st.subheader("Sanity check")
        kit.show(run, key=side.key(P + "sanity"), view="sanity")
    if run.flow is not None:
        st.subheader("Layer by layer")
        shown = kit.show(run, key=side.key(P + "flow"), view="flow")
        kit.export_buttons(run.flow, shown, key=side.key(P + "export.flow"),
                           name="attribution_layer_flow")
    if run.perturbation is not None:
        st.subheader("Perturbation analysis")
        table = kit.show(run.perturbation, key=side.key(P + "perturbation"))
        kit.export_buttons(run.perturbation, table, key=side.key(P + "export.perturbation"))
    kit.explain_panel(run, key=side.key(P + "explain"), expanded=not side.compared)


def view(side: kit.Side) -> None:
    # The sidebar's prompt; the default one when none reached this run (as in AppTest).
    prompt = side.prompt or (kit.DEFAULT_PROMPT if side.suffix == "" else kit.DEFAULT_PROMPT_B)
    signature = (side.model.name, prompt, tuple(methods), repr(target), repr(sorted(
        (m, tuple(sorted(o.items()))) for m, o in options.items())), checks)
    run = kit.result_on_click(side.key(P + "results"), signature, clicked and bool(methods),
                              ACTION, run_attribution, side.model, prompt, tuple(methods),
                              target, options, *checks)
    if run is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    with kit.reported_errors():
        show_run(run, side)


kit.require_app_shell()
st.title("Attribution")
kit.how_to_read()
st.write("Which input tokens made the model predict this? Each method scores every token of the "
         "sidebar prompt for one target; they often disagree, so the page also checks which "
         "maps are faithful here (masking the tokens they rank first should move the target "
         "more than masking random ones) and which survive randomising the model's weights.")
methods = ask(st.multiselect, "Methods", "methods",
              [m for m in DEFAULT_METHODS if m in ATTRIBUTION_METHODS],
              options=list(ATTRIBUTION_METHODS),
              format_func=lambda m: m.replace("_", " "))
st.caption(" · ".join(f"**{m.replace('_', ' ')}**: {md_escape(ATTRIBUTION_METHODS[m].description)}"
                      for m in methods))
target = target_inputs()
options = method_option_inputs(methods)
checks = check_inputs()
clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/play_arrow:")
if clicked and not methods:
    st.warning("Choose at least one method.")
try:
    kit.for_each_side(view)
except InterpError as error:
    kit.show_error(error)
