"""Activation patching: which layers, positions and heads carry the information behind an answer."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from interp import patching_tasks as tasks
from interp.errors import InterpError
from interp.explain import md_escape
from interp.patching import DEFAULT_NOISE_SCALE, DIRECTIONS, sweeps
from interp.patching.results import EFFECT_MEANING
from interp.tokens import axis_labels
from pages import kit
from pages.kit import Keys

ACTION = "Run patching"
P = "patching."  # this page's session-state keys; inputs persist across pages
CORRUPTION_LABELS = sweeps.CORRUPTION_LABELS


def ask(widget, label: str, name: str, default, **options):
    """A remembered input of this page, with its help text from `interp.patching.sweeps.INPUT_HELP`."""
    return kit.remembered(widget, label, P + name, default, help=sweeps.INPUT_HELP.get(name),
                          **options)


def agreement_inputs():
    sentence = ask(st.text_input, "Sentence (subject, then a verb such as is/are)", "sentence",
                   tasks.DEFAULT_AGREEMENT_SENTENCE)
    corrupted = ask(st.text_input, "Corrupted prefix (optional)", "corrupted_prefix", "")
    return partial(tasks.agreement_task, sentence=sentence, corrupted_prefix=corrupted or None)


def ioi_inputs():
    left, middle, right = st.columns(3)
    n = ask(left.slider, "Number of prompts", "ioi_n", 8, min_value=1, max_value=32)
    seed = ask(left.number_input, "Seed", "ioi_seed", 0, min_value=0, step=1)
    corruption = ask(middle.radio, "Corruption", "ioi_corruption", "swap",
                     options=list(tasks.IOI_CORRUPTIONS), format_func=CORRUPTION_LABELS.get)
    order = ask(right.radio, "Name order", "ioi_order", "both", options=list(tasks.IOI_ORDERS))
    template = ask(st.selectbox, "Template", "ioi_template", tasks.IOI_TEMPLATES[0],
                   options=list(tasks.IOI_TEMPLATES))
    return partial(tasks.ioi_task, n_prompts=int(n), corruption=corruption, seed=int(seed),
                   order=order, template=template)


def edited_facts() -> list[tasks.KnownFact]:
    with st.expander("Fact list (editable)"):
        table = kit.edited_table(P + "facts", pd.DataFrame(
            [(f.prompt, f.subject, f.answer) for f in tasks.DEFAULT_FACTS],
            columns=sweeps.FACT_COLUMNS), num_rows="dynamic", hide_index=True)
        st.caption("Subject-swap corruption picks a replacement subject from this list (one "
                   "with as many tokens), and its answer becomes the wrong answer.")
    return sweeps.facts_from_rows(table.dropna()[list(sweeps.FACT_COLUMNS)].itertuples(index=False))


def choose_fact(facts: list[tasks.KnownFact]) -> None:
    chosen = next((f for f in facts if f.prompt == st.session_state[P + "fact_choice.widget"]), None)
    if chosen is not None:
        for name, value in (("fact_prompt", chosen.prompt), ("fact_answer", chosen.answer),
                            ("fact_subject", chosen.subject)):
            kit.set_remembered(P + name, value)


def fact_inputs():
    facts, default = edited_facts(), tasks.DEFAULT_FACTS[0]
    prompts = [f.prompt for f in facts] or [default.prompt]
    ask(st.selectbox, "Start from a known fact", "fact_choice", prompts[0], options=prompts,
        on_change=choose_fact, args=(facts,))
    prompt = ask(st.text_input, "Prompt", "fact_prompt", default.prompt)
    left, right = st.columns(2)
    answer = ask(left.text_input, "Answer (one token)", "fact_answer", default.answer)
    subject = ask(left.text_input, "Subject (as written in the prompt)", "fact_subject",
                  default.subject)
    corruption = ask(right.radio, "Corruption", "fact_corruption", "subject",
                     options=list(tasks.FACT_CORRUPTIONS), format_func=CORRUPTION_LABELS.get)
    other, scale = "", DEFAULT_NOISE_SCALE
    if corruption == "subject":
        other = ask(right.text_input, "Replacement subject (optional)", "fact_other", "")
    else:
        scale = ask(right.slider, "Noise scale (x the embeddings' spread)", "noise_scale",
                    DEFAULT_NOISE_SCALE, min_value=0.5, max_value=10.0, step=0.5)
    return partial(tasks.fact_task, prompt=prompt, answer=answer, corruption=corruption,
                   subject=subject or None, other_subject=other or None,
                   noise_scale=float(scale), facts=facts)


def custom_inputs():
    clean = ask(st.text_area, "Clean prompt", "clean",
                st.session_state.get(Keys.PROMPT) or kit.DEFAULT_PROMPT, height=80)
    corrupted = ask(st.text_area, "Corrupted prompt", "corrupted",
                    st.session_state.get(Keys.PROMPT_B) or kit.DEFAULT_PROMPT_B, height=80)
    left, middle, right = st.columns(3)
    correct = ask(left.text_input, "Correct answer (one token)", "correct", "Mary")
    wrong = ask(middle.text_input, "Wrong answer (optional)", "wrong", "John")
    align = ask(right.radio, "If lengths differ", "align", "none", options=list(tasks.ALIGNMENTS),
                format_func=sweeps.ALIGN_LABELS.get)
    return partial(tasks.custom_task, clean=clean, corrupted=corrupted, correct=correct,
                   wrong=wrong or None, align=align)


TASK_INPUTS = {"agreement": agreement_inputs, "ioi": ioi_inputs, "fact": fact_inputs,
               "custom": custom_inputs}


def sweep_options() -> tuple[list[str], str, str, bool]:
    chosen = ask(st.multiselect, "What to patch", "sweeps", list(sweeps.DEFAULT_SWEEPS),
                 options=list(sweeps.SWEEPS))
    attribution = ask(st.checkbox, "Also run attribution patching and compare", "attribution",
                      True)
    middle, right = st.columns(2)
    direction = ask(middle.radio, "Direction", "direction", "denoising", options=list(DIRECTIONS))
    metric = ask(right.selectbox, "Metric", "metric", sweeps.AUTO_METRIC,
                 options=[sweeps.AUTO_METRIC, *tasks.METRICS])
    right.caption(sweeps.METRIC_HELP[metric])
    return chosen, direction, metric, attribution


def swap_prompts() -> None:
    """Exchange the custom pair's clean and corrupted prompts (the next run uses them)."""
    clean, corrupted = (st.session_state.get(P + name) for name in ("clean", "corrupted"))
    kit.set_remembered(P + "clean", corrupted)
    kit.set_remembered(P + "corrupted", clean)


def task_summary(run: sweeps.PatchingRun, side: kit.Side) -> None:
    task = run.task
    st.markdown(md_escape(task.description))
    st.dataframe(pd.DataFrame(sweeps.task_table(task)), hide_index=True)
    if task.uses_noise:
        st.caption(f"Corrupted run: noise of {task.noise_scale:g}x the embeddings' spread on "
                   f"positions {', '.join(map(str, task.noise_positions))}.")
    for warning in task.warnings:
        st.warning(md_escape(warning))
    first = run.sweeps[0].exact
    kit.metric_row({f"Clean {first.metric_name}": f"{first.clean_value:.4g}",
                    f"Corrupted {first.metric_name}": f"{first.corrupted_value:.4g}",
                    "Gap": f"{first.clean_value - first.corrupted_value:.4g}"})
    st.caption(f"The metric on the unpatched runs ({md_escape(first.model_name)}, "
               f"{first.direction}). Heatmaps show each patch's "
               f"{md_escape(EFFECT_MEANING[first.direction])}.")
    for note in first.notes:
        st.warning(md_escape(note))
        if task.kind == "custom":
            st.button("Swap the clean and corrupted prompts", key=side.key(P + "swap"),
                      on_click=swap_prompts)


def map_view(run: sweeps.PatchingRun, result, key: str) -> None:
    shown = kit.show(result, key=f"{key}.{result.method}")
    kit.export_buttons(result, shown, key=f"{key}.{result.method}.export",
                       json_extra={"task": run.task, "metric_choice": run.metric})


def sweep_view(run: sweeps.PatchingRun, outcome: sweeps.SweepOutcome, key: str,
               expanded: bool) -> None:
    map_view(run, outcome.exact, key)
    if outcome.agreement is not None:
        agreement = outcome.agreement
        verdict = "agree" if agreement.agrees else "do **not** agree"
        st.markdown(f"**Exact vs attribution** {verdict}: Pearson r = {agreement.pearson:.3f}, "
                    f"Spearman = {agreement.spearman:.3f}, size ratio = "
                    f"{agreement.scale_ratio:.3g}.")
        for note in agreement.notes:
            st.warning(md_escape(note))
        with st.expander("Attribution patching's estimate of this map"):
            map_view(run, outcome.approx, key)
    elif outcome.approx_error:
        st.info(f"No attribution estimate for this site: {md_escape(outcome.approx_error)}")
    kit.explain_panel(outcome.exact, key=f"{key}.explain", expanded=expanded,
                      agreement=outcome.agreement)


@st.fragment
def ranked_view(run: sweeps.PatchingRun, side: kit.Side) -> None:
    threshold = kit.remembered(st.slider, "Show components whose |effect| is at least",
                               side.key(P + "threshold"), 0.1, min_value=0.0, max_value=1.0,
                               step=0.05)
    table = sweeps.ranked_components(run, threshold)
    kit.export_buttons(table, kit.show(table, key=side.key(P + "ranked")),
                       key=side.key(P + "export.ranked"))


@st.fragment
def verb_curves_view(run: sweeps.PatchingRun, side: kit.Side) -> None:
    labels = axis_labels(run.curves.tokens)
    position = int(kit.remembered(
        st.selectbox, "Position to patch", side.key(P + "curve_position"),
        run.curves.subject_position, options=list(range(len(labels))),
        format_func=labels.__getitem__))
    shown = kit.show(run.curves, key=side.key(P + "curves"), position=position)
    kit.export_buttons(run.curves, shown, key=side.key(P + "export.curves"),
                       csv_options={"position": position})


def show_run(run: sweeps.PatchingRun, side: kit.Side) -> None:
    st.header("Results")
    task_summary(run, side)
    extra = ["Most important components"] + (
        ["Both verbs, layer by layer"] if run.curves is not None else [])
    tabs = st.tabs([o.label for o in run.sweeps] + extra)
    n = len(run.sweeps)
    sweep_tabs, ranked_tab, curves_tab = tabs[:n], tabs[n], tabs[n + 1:]
    for index, (tab, outcome) in enumerate(zip(sweep_tabs, run.sweeps, strict=True)):
        with tab:
            sweep_view(run, outcome, side.key(f"{P}sweep.{index}"), expanded=index == 0)
    with ranked_tab:
        ranked_view(run, side)
    for tab in curves_tab:
        with tab:
            verb_curves_view(run, side)
    kit.export_buttons(run, None, key=side.key(P + "export.all"), name="patching_run")


def view(side: kit.Side) -> None:
    """Build the task for this side's model, run it on a click, show the kept run."""
    task = signature = None
    try:
        task = build_task(side.model)
        signature = (side.model.name, kind, task, tuple(chosen_sweeps), direction, metric,
                     attribution)
    except InterpError as error:
        kit.show_error(error)
    if clicked and task is not None:
        kit.forget(side.key(P + "curve_position"))  # a new run starts at its subject
    kept = kit.last_result(side.key(P + "results"))
    if kept is not None and kept.task is not None and kept.task.kind != kind:
        kit.drop_result(side.key(P + "results"))  # another task's maps would only mislead
    run = kit.result_on_click(side.key(P + "results"), signature, clicked and task is not None,
                              ACTION, sweeps.run_sweeps, side.model, task, chosen_sweeps,
                              direction, metric, attribution)
    if run is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    with kit.reported_errors():
        show_run(run, side)


kit.require_app_shell()
st.title("Activation patching")
st.write("Run the model on a clean prompt and on a corrupted one that changes the answer, then "
         "copy one activation at a time between the runs. Components whose copy moves the "
         "answer back carry the information that decides it.")
kind = ask(st.radio, "Task", "task_kind", "agreement", options=list(tasks.TASK_KINDS),
           format_func=sweeps.TASK_LABELS.get, horizontal=True)
with st.container(border=True):
    build_task = TASK_INPUTS[kind]()
chosen_sweeps, direction, metric, attribution = sweep_options()
clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/play_arrow:")
kit.for_each_side(view)
