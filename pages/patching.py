"""Activation patching: which layers, positions and heads carry the information behind an answer."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp import patching_tasks as tasks
from interp.errors import InterpError
from interp.explain import md_escape
from interp.figures import patching as figures
from interp.patching import forms, sweeps
from interp.tokens import axis_labels
from pages import kit
from pages.kit import Keys

ACTION = "Run patching"
P = "patching."  # this page's session-state keys; inputs persist across pages


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


def task_arguments(kind: str) -> dict:
    """The task builder's keyword arguments from this task's form (and the fact list)."""
    defaults, extra = {}, {}
    if kind == "fact":
        extra["facts"] = facts = edited_facts()
        prompts = [f.prompt for f in facts] or [tasks.DEFAULT_FACTS[0].prompt]
        kit.remembered(st.selectbox, "Start from a known fact", P + "fact_choice", prompts[0],
                       options=prompts, on_change=choose_fact, args=(facts,))
    if kind == "custom":
        defaults = {"clean": st.session_state.get(Keys.PROMPT) or kit.DEFAULT_PROMPT,
                    "corrupted": st.session_state.get(Keys.PROMPT_B) or kit.DEFAULT_PROMPT_B}
    return {**kit.input_form(forms.TASK_FIELDS[kind], P, defaults), **extra}


def swap_prompts() -> None:
    """Exchange the custom pair's clean and corrupted prompts (the next run uses them)."""
    clean, corrupted = (st.session_state.get(P + name) for name in ("clean", "corrupted"))
    kit.set_remembered(P + "clean", corrupted)
    kit.set_remembered(P + "corrupted", clean)


def task_summary(run: sweeps.PatchingRun, side: kit.Side) -> None:
    kit.show(run.task, key=side.key(P + "task"))
    for warning in run.task.warnings:
        st.warning(md_escape(warning))
    kit.metric_row(figures.headline_numbers(run))
    st.caption(figures.headline_caption(run))
    for note in run.sweeps[0].exact.notes:
        st.warning(md_escape(note))
        if run.task.kind == "custom":
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
        st.markdown(figures.agreement_summary(outcome.agreement))
        for note in outcome.agreement.notes:
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
        ["Both verbs, layer by layer"] if run.curves is not None else []) + (
        ["Induction check"] if run.induction is not None else [])
    tabs = st.tabs([o.label for o in run.sweeps] + extra)
    n = len(run.sweeps)
    ranked_tab = tabs[n]
    sweep_tabs = tabs[:n]
    curves_tab = tabs[n + 1:n + 2] if run.curves is not None else []
    induction_tab = tabs[-1:] if run.induction is not None else []
    for index, (tab, outcome) in enumerate(zip(sweep_tabs, run.sweeps, strict=True)):
        with tab:
            sweep_view(run, outcome, side.key(f"{P}sweep.{index}"), expanded=index == 0)
    with ranked_tab:
        ranked_view(run, side)
    for tab in curves_tab:
        with tab:
            verb_curves_view(run, side)
    for tab in induction_tab:
        with tab:
            shown = kit.show(run.induction, key=side.key(P + "induction"))
            kit.export_buttons(run.induction, shown, key=side.key(P + "export.induction"))
            kit.explain_panel(run.induction, key=side.key(P + "explain.induction"))
    kit.export_buttons(run, None, key=side.key(P + "export.all"), name="patching_run")


def view(side: kit.Side) -> None:
    """Build the task for this side's model, run it on a click, show the kept run."""
    task = signature = None
    try:
        task = forms.TASK_BUILDERS[kind](side.model, **task_arguments_now)
        signature = (side.model.name, kind, task, tuple(options["sweeps"]), options["direction"],
                     options["metric"], options["attribution"])
    except InterpError as error:
        kit.show_error(error)
    if clicked and task is not None:
        kit.forget(side.key(P + "curve_position"))  # a new run starts at its subject
    kept = kit.last_result(side.key(P + "results"))
    if kept is not None and kept.task is not None and kept.task.kind != kind:
        kit.drop_result(side.key(P + "results"))  # another task's maps would only mislead
    run = kit.result_on_click(side.key(P + "results"), signature, clicked and task is not None,
                              ACTION, sweeps.run_sweeps, side.model, task, options["sweeps"],
                              options["direction"], options["metric"], options["attribution"])
    if run is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    with kit.reported_errors():
        show_run(run, side)


kit.require_app_shell()
st.title("Activation patching")
kit.how_to_read()
st.write("Run the model on a clean prompt and on a corrupted one that changes the answer, then "
         "copy one activation at a time between the runs. Components whose copy moves the "
         "answer back carry the information that decides it.")
kind = kit.remembered(st.radio, "Task", P + "task_kind", "agreement",
                      options=list(tasks.TASK_KINDS), format_func=sweeps.TASK_LABELS.get,
                      horizontal=True)
with st.container(border=True):
    task_arguments_now = task_arguments(kind)
options = kit.input_form(forms.RUN_FIELDS, P)
st.caption(sweeps.METRIC_HELP[options["metric"]])
clicked = st.button(ACTION, type="primary", key=P + "run", icon=":material/play_arrow:")
kit.for_each_side(view)
