"""Activation patching: which layers, positions and heads carry the information behind an answer."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from interp.errors import InterpError, InvalidOptionError
from interp.explain import explain, md_escape
from interp.export import figure_to_html, matrix_to_csv, table_to_csv, to_json
from interp.figures.patching import layer_head_heatmap, layer_pos_heatmap, verb_curves_figure
from interp.patching import (
    DIRECTIONS,
    MethodAgreement,
    PatchingResult,
    attribution_patch,
    compare_methods,
    patch,
)
from interp.patching_tasks import (
    ALIGNMENTS,
    DEFAULT_AGREEMENT_SENTENCE,
    DEFAULT_FACTS,
    FACT_CORRUPTIONS,
    IOI_CORRUPTIONS,
    IOI_ORDERS,
    IOI_TEMPLATES,
    METRICS,
    TASK_KINDS,
    KnownFact,
    PatchingTask,
    VerbCurves,
    agreement_task,
    agreement_verb_curves,
    custom_task,
    fact_task,
    ioi_task,
    task_inputs,
)
from interp.tokens import axis_labels
from pages.common import DEFAULT_PROMPT, DEFAULT_PROMPT_B, Keys, load_chosen_model, show_error

TASK_LABELS = {"agreement": "Subject-verb agreement", "ioi": "Indirect object (IOI)",
               "fact": "Fact recall", "custom": "Custom pair"}
# What the page can sweep: label -> (site, granularity).
SWEEPS = {
    "Residual stream (resid_pre)": ("resid_pre", "layer_pos"),
    "Attention output (attn_out)": ("attn_out", "layer_pos"),
    "MLP output (mlp_out)": ("mlp_out", "layer_pos"),
    "Attention heads (z)": ("z", "head"),
}
AUTO_METRIC = "auto"
METRIC_HELP = {
    AUTO_METRIC: "logit difference when the task has a wrong answer, else the correct answer's "
                 "probability",
    "logit_diff": "logit of the correct answer minus the wrong one",
    "correct_prob": "probability of the correct answer",
    "kl_to_clean": "KL divergence of the patched output from the clean output (0 = clean)",
}
CORRUPTION_LABELS = {"swap": "flipped subject (ABB -> ABA)", "third_name": "third name (ABC)",
                     "subject": "another subject", "noise": "noise on the subject"}
CORRUPTION_HELP = "; ".join(f"**{CORRUPTION_LABELS[name]}**: {text}"
                            for name, text in IOI_CORRUPTIONS.items())


class K:
    """Session-state keys of this page (inputs persist across pages; results survive reruns)."""

    TASK = "patching.task_kind"
    SENTENCE = "patching.sentence"
    CORRUPTED_PREFIX = "patching.corrupted_prefix"
    IOI_N = "patching.ioi_n"
    IOI_CORRUPTION = "patching.ioi_corruption"
    IOI_ORDER = "patching.ioi_order"
    IOI_TEMPLATE = "patching.ioi_template"
    IOI_SEED = "patching.ioi_seed"
    FACTS = "patching.facts"
    FACTS_VERSION = "patching.facts_version"
    FACT_CHOICE = "patching.fact_choice"
    FACT_PROMPT = "patching.fact_prompt"
    FACT_ANSWER = "patching.fact_answer"
    FACT_SUBJECT = "patching.fact_subject"
    FACT_CORRUPTION = "patching.fact_corruption"
    FACT_OTHER = "patching.fact_other"
    NOISE_SCALE = "patching.noise_scale"
    CLEAN = "patching.clean"
    CORRUPTED = "patching.corrupted"
    CORRECT = "patching.correct"
    WRONG = "patching.wrong"
    ALIGN = "patching.align"
    SWEEPS = "patching.sweeps"
    DIRECTION = "patching.direction"
    METRIC = "patching.metric"
    ATTRIBUTION = "patching.attribution"
    RUN = "patching.run"
    RESULTS = "patching.results"
    RESULTS_SIGNATURE = "patching.results_signature"
    THRESHOLD = "patching.threshold"
    CURVE_POSITION = "patching.curve_position"


def remembered(widget, label: str, key: str, default, **kwargs):
    """A widget whose value outlives page switches: Streamlit drops a widget's state when its
    page is not shown, so the value is also kept under `key` and the widget uses `key.widget`."""
    widget_key = key + ".widget"
    st.session_state.setdefault(key, default)
    st.session_state.setdefault(widget_key, st.session_state[key])
    options = kwargs.get("options")
    if options is not None:  # options can change (an edited list, a shorter prompt)
        fallback = default if default in options or isinstance(default, list) else options[0]
        for stored_key in (key, widget_key):
            stored = st.session_state[stored_key]
            if isinstance(stored, list):
                st.session_state[stored_key] = [v for v in stored if v in options]
            elif stored not in options:
                st.session_state[stored_key] = fallback
    value = widget(label, key=widget_key, **kwargs)
    st.session_state[key] = value
    return value


@dataclass(frozen=True)
class SweepOutcome:
    """One swept site: exact patching, and attribution patching with its agreement (or why not)."""

    label: str
    exact: PatchingResult
    approx: PatchingResult | None = None
    agreement: MethodAgreement | None = None
    approx_error: str | None = None


@dataclass(frozen=True)
class PatchingRun:
    """Everything one press of "Run patching" produced, kept in session state."""

    task: PatchingTask
    metric: str
    direction: str
    sweeps: tuple[SweepOutcome, ...]
    curves: VerbCurves | None = None


# ---------------------------------------------------------------------------------------------
# Inputs


def agreement_inputs(model) -> PatchingTask:
    sentence = remembered(st.text_input, "Sentence (subject, then a verb such as is/are)",
                          K.SENTENCE, DEFAULT_AGREEMENT_SENTENCE)
    corrupted = remembered(
        st.text_input, "Corrupted prefix (optional)", K.CORRUPTED_PREFIX, "",
        help="Leave empty to flip the subject's number automatically (keys -> key). It must "
             "have as many tokens as the text before the verb.")
    return agreement_task(model, sentence, corrupted or None)


def ioi_inputs(model) -> PatchingTask:
    left, middle, right = st.columns(3)
    with left:
        n = remembered(st.slider, "Number of prompts", K.IOI_N, 8, min_value=1, max_value=32,
                       help="Averaging over prompts evens out quirks of single names.")
        seed = remembered(st.number_input, "Seed", K.IOI_SEED, 0, min_value=0, step=1)
    with middle:
        corruption = remembered(st.radio, "Corruption", K.IOI_CORRUPTION, "swap",
                                options=list(IOI_CORRUPTIONS), format_func=corruption_label,
                                help=CORRUPTION_HELP)
    with right:
        order = remembered(st.radio, "Name order", K.IOI_ORDER, "both", options=list(IOI_ORDERS),
                           help="ABBA names the indirect object first; 'both' alternates.")
    template = remembered(st.selectbox, "Template", K.IOI_TEMPLATE, IOI_TEMPLATES[0],
                          options=list(IOI_TEMPLATES))
    return ioi_task(model, int(n), corruption, int(seed), order, template)


def corruption_label(name: str) -> str:
    return CORRUPTION_LABELS[name]


def apply_fact_edits(editor_key: str) -> None:
    """Fold the editor's changes into the stored table, then start a fresh editor on it (a new
    key), so no change is applied twice and edits survive page switches."""
    edits = st.session_state[editor_key]
    table = st.session_state[K.FACTS].copy()
    for row, changes in edits.get("edited_rows", {}).items():
        for column, value in changes.items():
            table.iloc[int(row), table.columns.get_loc(column)] = value
    table = table.drop(index=table.index[list(edits.get("deleted_rows", []))])
    added = pd.DataFrame(edits.get("added_rows", []), columns=table.columns)
    st.session_state[K.FACTS] = pd.concat([table, added], ignore_index=True).fillna("")
    st.session_state[K.FACTS_VERSION] += 1


def edited_facts() -> list[KnownFact]:
    st.session_state.setdefault(K.FACTS, pd.DataFrame(
        [(f.prompt, f.subject, f.answer) for f in DEFAULT_FACTS],
        columns=["prompt", "subject", "answer"]))
    st.session_state.setdefault(K.FACTS_VERSION, 0)
    editor_key = f"{K.FACTS}.editor.{st.session_state[K.FACTS_VERSION]}"
    with st.expander("Fact list (editable)"):
        st.data_editor(st.session_state[K.FACTS], num_rows="dynamic", hide_index=True,
                       key=editor_key, on_change=apply_fact_edits, args=(editor_key,))
        st.caption("Subject-swap corruption picks a replacement subject from this list (one "
                   "with as many tokens), and its answer becomes the wrong answer.")
    table = st.session_state[K.FACTS]
    return [KnownFact(str(row.prompt), str(row.subject), str(row.answer))
            for row in table.dropna().itertuples() if str(row.prompt).strip()]


def choose_fact(facts: list[KnownFact]) -> None:
    chosen = next((f for f in facts if f.prompt == st.session_state[K.FACT_CHOICE + ".widget"]),
                  None)
    if chosen is not None:
        for key, value in ((K.FACT_PROMPT, chosen.prompt), (K.FACT_ANSWER, chosen.answer),
                           (K.FACT_SUBJECT, chosen.subject)):
            st.session_state[key] = st.session_state[key + ".widget"] = value


def fact_inputs(model) -> PatchingTask:
    facts = edited_facts()
    default = DEFAULT_FACTS[0]
    prompts = [f.prompt for f in facts] or [default.prompt]
    remembered(st.selectbox, "Start from a known fact", K.FACT_CHOICE, prompts[0],
               options=prompts, on_change=choose_fact, args=(facts,))
    prompt = remembered(st.text_input, "Prompt", K.FACT_PROMPT, default.prompt)
    left, right = st.columns(2)
    with left:
        answer = remembered(st.text_input, "Answer (one token)", K.FACT_ANSWER, default.answer)
        subject = remembered(st.text_input, "Subject (as written in the prompt)", K.FACT_SUBJECT,
                             default.subject)
    with right:
        corruption = remembered(
            st.radio, "Corruption", K.FACT_CORRUPTION, "subject", options=list(FACT_CORRUPTIONS),
            format_func=corruption_label,
            help="**another subject**: swap the subject for one with as many tokens; **noise on "
                 "the subject**: Gaussian noise on its token embeddings (causal tracing).")
        if corruption == "subject":
            other = remembered(st.text_input, "Replacement subject (optional)", K.FACT_OTHER, "",
                               help="Leave empty to pick one from the fact list.")
            scale = 3.0
        else:
            other = ""
            scale = remembered(st.slider, "Noise scale (x the embeddings' spread)", K.NOISE_SCALE,
                               3.0, min_value=0.5, max_value=10.0, step=0.5)
    return fact_task(model, prompt, answer, corruption, subject or None, other or None,
                     float(scale), facts)


def custom_inputs(model) -> PatchingTask:
    clean = remembered(st.text_area, "Clean prompt", K.CLEAN,
                       st.session_state.get(Keys.PROMPT) or DEFAULT_PROMPT, height=80)
    corrupted = remembered(st.text_area, "Corrupted prompt", K.CORRUPTED,
                           st.session_state.get(Keys.PROMPT_B) or DEFAULT_PROMPT_B, height=80)
    left, middle, right = st.columns(3)
    with left:
        correct = remembered(st.text_input, "Correct answer (one token)", K.CORRECT, "Mary")
    with middle:
        wrong = remembered(st.text_input, "Wrong answer (optional)", K.WRONG, "John")
    with right:
        align = remembered(st.radio, "If lengths differ", K.ALIGN, "none", options=list(ALIGNMENTS),
                           format_func={"none": "refuse", "left_pad": "left-pad the shorter"}.get,
                           help="Left-padding lines the prompts up from the end; positions "
                                "before the difference then don't correspond.")
    return custom_task(model, clean, corrupted, correct, wrong or None, align)


TASK_INPUTS = {"agreement": agreement_inputs, "ioi": ioi_inputs, "fact": fact_inputs,
               "custom": custom_inputs}


def sweep_options() -> tuple[list[str], str, str, bool]:
    left, middle, right = st.columns([2, 1, 1])
    with left:
        sweeps = remembered(st.multiselect, "What to patch", K.SWEEPS, list(SWEEPS),
                            options=list(SWEEPS))
        attribution = remembered(
            st.checkbox, "Also run attribution patching and compare", K.ATTRIBUTION, True,
            help="A gradient estimate of every patch at once; its agreement with exact patching "
                 "is shown next to each heatmap.")
    with middle:
        direction = remembered(
            st.radio, "Direction", K.DIRECTION, "denoising", options=list(DIRECTIONS),
            help="Denoising copies clean activations into the corrupted run (what is enough to "
                 "restore the answer); noising copies corrupted ones into the clean run (what "
                 "the answer needs).")
    with right:
        metric = remembered(st.selectbox, "Metric", K.METRIC, AUTO_METRIC,
                            options=[AUTO_METRIC, *METRICS],
                            format_func=lambda m: f"{m}: {METRIC_HELP[m]}")
    return sweeps, direction, metric, attribution


# ---------------------------------------------------------------------------------------------
# Running


def run_patching(model, task: PatchingTask, sweeps: list[str], direction: str, metric: str,
                 attribution: bool) -> PatchingRun:
    """Every chosen sweep with one progress bar; nothing is stored unless all of it finishes."""
    if not sweeps:
        raise InvalidOptionError("Choose at least one thing to patch under 'What to patch'.")
    if metric == AUTO_METRIC:
        metric = "logit_diff" if task.has_wrong_answer else "correct_prob"
    inputs, chosen_metric = task_inputs(model, task, metric)
    steps = len(sweeps) + (1 if task.kind == "agreement" else 0)
    bar = st.progress(0.0, text="Starting ...")
    outcomes = []
    try:
        for step, label in enumerate(sweeps):
            site, granularity = SWEEPS[label]
            exact = patch(model, inputs, chosen_metric, site=site, granularity=granularity,
                          direction=direction, progress=progress_reporter(bar, step, steps, label))
            outcomes.append(with_attribution(model, inputs, chosen_metric, label, exact)
                            if attribution else SweepOutcome(label, exact))
        curves = None
        if task.kind == "agreement":
            curves = agreement_verb_curves(model, task, progress=progress_reporter(
                bar, len(sweeps), steps, "both verbs' probabilities"))
    finally:
        bar.empty()
    return PatchingRun(task=task, metric=metric, direction=direction, sweeps=tuple(outcomes),
                       curves=curves)


def progress_reporter(bar, step: int, steps: int, label: str):
    def report(done: int, total: int) -> None:
        bar.progress(min(1.0, (step + done / max(total, 1)) / steps),
                     text=f"Patching {label}: {done} of {total} components")
    return report


def with_attribution(model, inputs, metric, label: str, exact: PatchingResult) -> SweepOutcome:
    try:
        approx = attribution_patch(model, inputs, metric, site=exact.site,
                                   granularity=exact.granularity, direction=exact.direction)
        return SweepOutcome(label, exact, approx, compare_methods(exact, approx))
    except InterpError as error:
        return SweepOutcome(label, exact, approx_error=str(error))


# ---------------------------------------------------------------------------------------------
# Results


def task_summary(run: PatchingRun) -> None:
    task = run.task
    st.markdown(md_escape(task.description))
    rows = {"clean prompt": task.clean_prompts, "correct": task.correct_answers}
    if task.corrupted_prompts is not None:
        rows["corrupted prompt"] = task.corrupted_prompts
    if task.wrong_answers is not None:
        rows["wrong"] = task.wrong_answers
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if task.uses_noise:
        st.caption(f"Corrupted run: noise of {task.noise_scale:g}x the embeddings' spread on "
                   f"positions {', '.join(map(str, task.noise_positions))}.")
    for warning in task.warnings:
        st.warning(md_escape(warning))
    first = run.sweeps[0].exact
    columns = st.columns(3)
    columns[0].metric(f"Clean {first.metric_name}", f"{first.clean_value:.4g}")
    columns[1].metric(f"Corrupted {first.metric_name}", f"{first.corrupted_value:.4g}")
    columns[2].metric("Gap", f"{first.clean_value - first.corrupted_value:.4g}")
    st.caption(f"The metric on the unpatched runs ({first.model_name}, {first.direction}). "
               "Heatmaps show each patch's normalized score: 0 = the corrupted value, 1 = the "
               "clean value.")


def heatmap(result: PatchingResult) -> go.Figure:
    return layer_head_heatmap(result) if result.granularity == "head" else layer_pos_heatmap(result)


def heatmap_caption(result: PatchingResult) -> str:
    verb = "restores" if result.direction == "denoising" else "keeps"
    if result.granularity == "head":
        return (f"Each cell is one attention head (row = layer, column = head), patched at all "
                f"positions at once. Colour is the normalized score: 1 means patching that "
                f"head {verb} the clean answer fully, 0 that it does nothing, negative that it "
                "pushes towards the corrupted answer. Hover for raw metric values.")
    return (f"Rows are layers, columns token positions of the clean prompt. Each cell patches "
            f"`{result.site}` at one layer and one position; colour is the normalized score "
            f"(1 = {verb} the clean answer, 0 = no effect). Hover for raw metric values.")


def matrix_csv(result: PatchingResult) -> bytes:
    rows = [f"L{layer}" for layer in range(result.values.shape[0])]
    if result.granularity == "head":
        columns = [f"H{head}" for head in range(result.values.shape[1])]
    else:
        columns = axis_labels(result.tokens)
    return matrix_to_csv(result.normalized, rows, columns, corner="layer")


def downloads(result: PatchingResult, figure: go.Figure, run: PatchingRun, name: str,
              key: str) -> None:
    columns = st.columns(3)
    columns[0].download_button(
        "JSON", to_json(result, task=run.task, metric_choice=run.metric), file_name=f"{name}.json",
        mime="application/json", key=f"{key}.json", on_click="ignore")
    columns[1].download_button("CSV (normalized)", matrix_csv(result), file_name=f"{name}.csv",
                               mime="text/csv", key=f"{key}.csv", on_click="ignore")
    columns[2].download_button("Plotly HTML", figure_to_html(figure), file_name=f"{name}.html",
                               mime="text/html", key=f"{key}.html", on_click="ignore")


def sweep_view(run: PatchingRun, outcome: SweepOutcome, index: int) -> None:
    exact = outcome.exact
    name = f"patching_{exact.site}_{exact.granularity}"
    left, right = st.columns(2) if outcome.approx is not None else (st.container(), None)
    with left:
        figure = heatmap(exact)
        st.plotly_chart(figure, key=f"patching.heatmap.{index}")
        st.caption(heatmap_caption(exact))
        downloads(exact, figure, run, name, f"patching.export.{index}")
    if right is not None:
        with right:
            approx_figure = heatmap(outcome.approx)
            st.plotly_chart(approx_figure, key=f"patching.approx.{index}")
            st.caption("Attribution patching: the same map estimated from one gradient, "
                       "(clean - corrupted activation) x gradient of the metric. Compare it "
                       "with the exact map on the left.")
            downloads(outcome.approx, approx_figure, run, name + "_attribution",
                      f"patching.export_approx.{index}")
        agreement = outcome.agreement
        st.markdown(f"**Exact vs attribution**: Pearson r = {agreement.pearson:.3f}, "
                    f"Spearman = {agreement.spearman:.3f}.")
    elif outcome.approx_error:
        st.info(f"No attribution estimate for this site: {outcome.approx_error}")
    explanation = explain(exact, agreement=outcome.agreement)
    with st.expander("Explain", expanded=index == 0):
        st.markdown(explanation.markdown)


@st.fragment
def ranked_components(run: PatchingRun) -> None:
    st.subheader("Most important components")
    threshold = remembered(
        st.slider, "Show components whose |normalized score| is at least", K.THRESHOLD, 0.1,
        min_value=0.0, max_value=1.0, step=0.05)
    rows = []
    for outcome in run.sweeps:
        result = outcome.exact
        for label, normalized, raw in result.top_components(k=result.values.numel()):
            if abs(normalized) >= threshold:
                rows.append((result.site, label, normalized, raw))
    rows.sort(key=lambda row: -abs(row[2]))
    header = ["site", "component", "normalized", "raw metric"]
    st.dataframe(pd.DataFrame(rows, columns=header), hide_index=True)
    st.caption(f"{len(rows)} components across all sweeps, strongest first. Normalized 1 = the "
               "clean answer, 0 = no effect; components in residual sweeps overlap (each cell "
               "carries everything before it), so scores don't add up across rows.")
    st.download_button("CSV", table_to_csv(header, rows), file_name="patching_components.csv",
                       mime="text/csv", key="patching.export.ranked", on_click="ignore")


@st.fragment
def verb_curves_view(curves: VerbCurves) -> None:
    st.subheader("Both verbs, layer by layer")
    labels = axis_labels(curves.tokens)
    position = remembered(st.selectbox, "Position to patch", K.CURVE_POSITION,
                          curves.subject_position, options=list(range(len(labels))),
                          format_func=lambda p: labels[p])
    position = min(int(position), len(labels) - 1)
    figure = verb_curves_figure(curves, position)
    st.plotly_chart(figure, key="patching.curves")
    st.caption("Solid lines: each verb's probability when the clean residual stream (resid_pre) "
               "at this position and the chosen layer is copied into the corrupted run; dotted: "
               "the clean run, dashed: the corrupted run. At the subject, early layers restore "
               "the clean verb and later ones stop mattering once the number has moved on; at "
               "the last position it is the other way round. Computed with two engine sweeps of "
               "resid_pre by layer and position, measuring each verb's probability.")
    columns = st.columns(2)
    rows = [(layer, float(curves.correct_prob[layer, position]),
             float(curves.wrong_prob[layer, position]))
            for layer in range(curves.correct_prob.shape[0])]
    columns[0].download_button(
        "CSV", table_to_csv(["layer", f"P({curves.correct_verb})", f"P({curves.wrong_verb})"], rows),
        file_name="agreement_verb_curves.csv", mime="text/csv", key="patching.export.curves.csv",
        on_click="ignore")
    columns[1].download_button(
        "Plotly HTML", figure_to_html(figure), file_name="agreement_verb_curves.html",
        mime="text/html", key="patching.export.curves.html", on_click="ignore")


def show_run(run: PatchingRun) -> None:
    st.header("Results")
    task_summary(run)
    tabs = st.tabs([outcome.label for outcome in run.sweeps])
    for index, (tab, outcome) in enumerate(zip(tabs, run.sweeps, strict=True)):
        with tab:
            sweep_view(run, outcome, index)
    if run.curves is not None:
        verb_curves_view(run.curves)
    ranked_components(run)
    st.download_button(
        "Export the whole run (JSON)", to_json(run), file_name="patching_run.json",
        mime="application/json", key="patching.export.all", on_click="ignore")


# ---------------------------------------------------------------------------------------------
# The page


st.title("Activation patching")
st.write("Run the model on a clean prompt and on a corrupted one that changes the answer, then "
         "copy one activation at a time between the runs. Components whose copy moves the "
         "answer back carry the information that decides it.")
model = load_chosen_model()

kind = remembered(st.radio, "Task", K.TASK, "agreement", options=list(TASK_KINDS),
                  format_func=TASK_LABELS.get, horizontal=True)
task, task_error = None, None
with st.container(border=True):
    try:
        task = TASK_INPUTS[kind](model)
    except InterpError as error:
        task_error = error
sweeps, direction, metric, attribution = sweep_options()
signature = (model.name, kind, task, tuple(sweeps), direction, metric, attribution)

if st.button("Run patching", type="primary", key=K.RUN, icon=":material/play_arrow:"):
    if task_error is not None:
        show_error(task_error)
    else:
        try:
            st.session_state[K.RESULTS] = run_patching(model, task, sweeps, direction, metric,
                                                       attribution)
            st.session_state[K.RESULTS_SIGNATURE] = signature
            for key in (K.CURVE_POSITION, K.CURVE_POSITION + ".widget"):
                st.session_state.pop(key, None)  # a new run starts at its own subject position
        except InterpError as error:
            show_error(error)
elif task_error is not None:
    show_error(task_error)

run: PatchingRun | None = st.session_state.get(K.RESULTS)
if run is not None:
    if st.session_state.get(K.RESULTS_SIGNATURE) != signature:
        st.info("These results are from an earlier run; the inputs have changed since. Press "
                "Run patching to update them.")
    try:
        show_run(run)
    except InterpError as error:
        show_error(error)
else:
    st.caption("Press Run patching: the defaults run at once.")
