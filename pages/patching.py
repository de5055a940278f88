"""Activation patching: which layers, positions and heads carry the information behind an answer."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from interp import patching_tasks as tasks
from interp.errors import InterpError
from interp.explain import md_escape
from interp.patching import DIRECTIONS
from interp.sweeps import (AUTO_METRIC, CORRUPTION_HELP, CORRUPTION_LABELS, METRIC_HELP, SWEEPS,
                           PatchingRun, SweepOutcome, ranked_components, run_sweeps)
from interp.tokens import axis_labels
from pages import kit
from pages.kit import Keys, remembered

TASK_LABELS = {"agreement": "Subject-verb agreement", "ioi": "Indirect object (IOI)",
               "fact": "Fact recall", "custom": "Custom pair"}
ACTION = "Run patching"
P = "patching."  # this page's session-state keys; inputs persist across pages


def agreement_inputs():
    sentence = remembered(st.text_input, "Sentence (subject, then a verb such as is/are)",
                          P + "sentence", tasks.DEFAULT_AGREEMENT_SENTENCE)
    corrupted = remembered(st.text_input, "Corrupted prefix (optional)", P + "corrupted_prefix", "",
                           help="Leave empty to flip the subject's number automatically (keys -> "
                                "key). It must have as many tokens as the text before the verb.")
    return partial(tasks.agreement_task, sentence=sentence, corrupted_prefix=corrupted or None)


def ioi_inputs():
    left, middle, right = st.columns(3)
    with left:
        n = remembered(st.slider, "Number of prompts", P + "ioi_n", 8, min_value=1, max_value=32,
                       help="Averaging over prompts evens out quirks of single names.")
        seed = remembered(st.number_input, "Seed", P + "ioi_seed", 0, min_value=0, step=1)
    with middle:
        corruption = remembered(st.radio, "Corruption", P + "ioi_corruption", "swap",
                                options=list(tasks.IOI_CORRUPTIONS),
                                format_func=CORRUPTION_LABELS.get, help=CORRUPTION_HELP)
    with right:
        order = remembered(st.radio, "Name order", P + "ioi_order", "both",
                           options=list(tasks.IOI_ORDERS),
                           help="ABBA names the indirect object first; 'both' alternates.")
    template = remembered(st.selectbox, "Template", P + "ioi_template", tasks.IOI_TEMPLATES[0],
                          options=list(tasks.IOI_TEMPLATES))
    return partial(tasks.ioi_task, n_prompts=int(n), corruption=corruption, seed=int(seed),
                   order=order, template=template)


def edited_facts() -> list[tasks.KnownFact]:
    with st.expander("Fact list (editable)"):
        table = kit.edited_table(P + "facts", pd.DataFrame(
            [(f.prompt, f.subject, f.answer) for f in tasks.DEFAULT_FACTS],
            columns=["prompt", "subject", "answer"]), num_rows="dynamic", hide_index=True)
        st.caption("Subject-swap corruption picks a replacement subject from this list (one "
                   "with as many tokens), and its answer becomes the wrong answer.")
    return [tasks.KnownFact(str(row.prompt), str(row.subject), str(row.answer))
            for row in table.dropna().itertuples() if str(row.prompt).strip()]


def choose_fact(facts: list[tasks.KnownFact]) -> None:
    chosen = next((f for f in facts if f.prompt == st.session_state[P + "fact_choice.widget"]), None)
    if chosen is not None:
        for name, value in (("fact_prompt", chosen.prompt), ("fact_answer", chosen.answer),
                            ("fact_subject", chosen.subject)):
            kit.set_remembered(P + name, value)


def fact_inputs():
    facts, default = edited_facts(), tasks.DEFAULT_FACTS[0]
    prompts = [f.prompt for f in facts] or [default.prompt]
    remembered(st.selectbox, "Start from a known fact", P + "fact_choice", prompts[0],
               options=prompts, on_change=choose_fact, args=(facts,))
    prompt = remembered(st.text_input, "Prompt", P + "fact_prompt", default.prompt)
    left, right = st.columns(2)
    with left:
        answer = remembered(st.text_input, "Answer (one token)", P + "fact_answer", default.answer)
        subject = remembered(st.text_input, "Subject (as written in the prompt)",
                             P + "fact_subject", default.subject)
    with right:
        corruption = remembered(
            st.radio, "Corruption", P + "fact_corruption", "subject",
            options=list(tasks.FACT_CORRUPTIONS), format_func=CORRUPTION_LABELS.get,
            help="**another subject**: swap the subject for one with as many tokens; **noise on "
                 "the subject**: Gaussian noise on its token embeddings (causal tracing).")
        other, scale = "", 3.0
        if corruption == "subject":
            other = remembered(st.text_input, "Replacement subject (optional)", P + "fact_other",
                               "", help="Leave empty to pick one from the fact list.")
        else:
            scale = remembered(st.slider, "Noise scale (x the embeddings' spread)",
                               P + "noise_scale", 3.0, min_value=0.5, max_value=10.0, step=0.5)
    return partial(tasks.fact_task, prompt=prompt, answer=answer, corruption=corruption,
                   subject=subject or None, other_subject=other or None,
                   noise_scale=float(scale), facts=facts)


def custom_inputs():
    clean = remembered(st.text_area, "Clean prompt", P + "clean",
                       st.session_state.get(Keys.PROMPT) or kit.DEFAULT_PROMPT, height=80)
    corrupted = remembered(st.text_area, "Corrupted prompt", P + "corrupted",
                           st.session_state.get(Keys.PROMPT_B) or kit.DEFAULT_PROMPT_B, height=80)
    left, middle, right = st.columns(3)
    with left:
        correct = remembered(st.text_input, "Correct answer (one token)", P + "correct", "Mary")
    with middle:
        wrong = remembered(st.text_input, "Wrong answer (optional)", P + "wrong", "John")
    with right:
        align = remembered(st.radio, "If lengths differ", P + "align", "none",
                           options=list(tasks.ALIGNMENTS),
                           format_func={"none": "refuse", "left_pad": "left-pad the shorter"}.get,
                           help="Left-padding lines the prompts up from the end; positions "
                                "before the difference then don't correspond.")
    return partial(tasks.custom_task, clean=clean, corrupted=corrupted, correct=correct,
                   wrong=wrong or None, align=align)


TASK_INPUTS = {"agreement": agreement_inputs, "ioi": ioi_inputs, "fact": fact_inputs,
               "custom": custom_inputs}


def sweep_options() -> tuple[list[str], str, str, bool]:
    left, middle, right = st.columns([2, 1, 1])
    with left:
        sweeps = remembered(st.multiselect, "What to patch", P + "sweeps", list(SWEEPS),
                            options=list(SWEEPS))
        attribution = remembered(
            st.checkbox, "Also run attribution patching and compare", P + "attribution", True,
            help="A gradient estimate of every patch at once; its agreement with exact patching "
                 "is shown next to each heatmap.")
    with middle:
        direction = remembered(
            st.radio, "Direction", P + "direction", "denoising", options=list(DIRECTIONS),
            help="Denoising copies clean activations into the corrupted run (what is enough to "
                 "restore the answer); noising copies corrupted ones into the clean run (what "
                 "the answer needs).")
    with right:
        metric = remembered(st.selectbox, "Metric", P + "metric", AUTO_METRIC,
                            options=[AUTO_METRIC, *tasks.METRICS],
                            format_func=lambda m: f"{m}: {METRIC_HELP[m]}")
    return sweeps, direction, metric, attribution


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
    st.caption(f"The metric on the unpatched runs ({md_escape(first.model_name)}, "
               f"{first.direction}). Heatmaps show each patch's normalized score: 0 = the "
               "corrupted value, 1 = the clean value.")


def sweep_view(run: PatchingRun, outcome: SweepOutcome, key: str, expanded: bool) -> None:
    maps = [outcome.exact] + ([outcome.approx] if outcome.approx is not None else [])
    for column, result in zip(st.columns(len(maps)), maps, strict=True):
        with column:
            shown = kit.show(result, key=f"{key}.{result.method}")
            kit.export_buttons(result, shown, key=f"{key}.{result.method}.export",
                               json_extra={"task": run.task, "metric_choice": run.metric})
    if outcome.agreement is not None:
        st.markdown(f"**Exact vs attribution**: Pearson r = {outcome.agreement.pearson:.3f}, "
                    f"Spearman = {outcome.agreement.spearman:.3f}.")
    elif outcome.approx_error:
        st.info(f"No attribution estimate for this site: {md_escape(outcome.approx_error)}")
    kit.explain_panel(outcome.exact, key=f"{key}.explain", expanded=expanded,
                      agreement=outcome.agreement)


@st.fragment
def ranked_view(run: PatchingRun, side: kit.Side) -> None:
    st.subheader("Most important components")
    threshold = remembered(st.slider, "Show components whose |normalized score| is at least",
                           side.key(P + "threshold"), 0.1, min_value=0.0, max_value=1.0, step=0.05)
    table = ranked_components(run, threshold)
    st.dataframe(pd.DataFrame(table.rows, columns=table.header), hide_index=True)
    st.caption(f"{len(table.rows)} components across all sweeps, strongest first. Normalized 1 = "
               "the clean answer, 0 = no effect; components in residual sweeps overlap (each cell "
               "carries everything before it), so scores don't add up across rows.")
    kit.export_buttons(table, None, key=side.key(P + "export.ranked"), name="patching_components")


@st.fragment
def verb_curves_view(run: PatchingRun, side: kit.Side) -> None:
    st.subheader("Both verbs, layer by layer")
    labels = axis_labels(run.curves.tokens)
    position = int(remembered(st.selectbox, "Position to patch", side.key(P + "curve_position"),
                              run.curves.subject_position, options=list(range(len(labels))),
                              format_func=labels.__getitem__))
    shown = kit.show(run.curves, key=side.key(P + "curves"), position=position)
    kit.export_buttons(run.curves, shown, key=side.key(P + "export.curves"),
                       csv_options={"position": position})


def show_run(run: PatchingRun, side: kit.Side) -> None:
    st.header("Results")
    task_summary(run)
    tabs = st.tabs([outcome.label for outcome in run.sweeps])
    for index, (tab, outcome) in enumerate(zip(tabs, run.sweeps, strict=True)):
        with tab:
            sweep_view(run, outcome, side.key(f"{P}sweep.{index}"), expanded=index == 0)
    if run.curves is not None:
        verb_curves_view(run, side)
    ranked_view(run, side)
    kit.export_buttons(run, None, key=side.key(P + "export.all"), name="patching_run")


def view(side: kit.Side) -> None:
    """Build the task for this side's model, run it on a click, show the kept run."""
    key, signature = side.key(P + "results"), None
    try:
        task = build_task(side.model)
        signature = (side.model.name, kind, task, tuple(sweeps), direction, metric, attribution)
        if clicked:
            kit.forget(side.key(P + "curve_position"))  # a new run starts at its subject
            with kit.progress_reporter() as report:
                kit.run_and_remember(key, signature, run_sweeps, side.model, task, sweeps,
                                     direction, metric, attribution, progress=report)
    except InterpError as error:
        kit.show_error(error)
    run = kit.last_result(key)
    if run is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    kit.stale_notice(key, signature, ACTION)
    with kit.reported_errors():
        show_run(run, side)


kit.require_app_shell()
st.title("Activation patching")
st.write("Run the model on a clean prompt and on a corrupted one that changes the answer, then "
         "copy one activation at a time between the runs. Components whose copy moves the "
         "answer back carry the information that decides it.")
kind = remembered(st.radio, "Task", P + "task_kind", "agreement", options=list(tasks.TASK_KINDS),
                  format_func=TASK_LABELS.get, horizontal=True)
with st.container(border=True):
    build_task = TASK_INPUTS[kind]()
sweeps, direction, metric, attribution = sweep_options()
clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/play_arrow:")
kit.for_each_side(view)
