"""Circuits: which heads, MLPs and connections between them carry the task, and how faithfully."""

from __future__ import annotations

from functools import partial

import streamlit as st

from interp import induction
from interp import patching_tasks as tasks
from interp.circuits import report  # noqa: F401  (registers exports and the explanation)
from interp.circuits.direct_effects import component_direct_effects
from interp.circuits.robustness import robustness
from interp.circuits.runs import run_circuits, view_circuit
from interp.circuits.scores import METHOD_LABELS
from interp.errors import InterpError
from interp.explain import md_escape
from interp.patching.ablation import ABLATION_KINDS
from pages import kit

ACTION = "Find circuit"
P = "circuits."
TASK_LABELS = {"ioi": "Indirect object (IOI)", "agreement": "Subject-verb agreement",
               "fact": "Fact recall", "induction": "Induction (repeated tokens)",
               "custom": "Custom pair"}
SELECT_BY = {"top_n": "Top-n edges", "threshold": "Score threshold"}


def ask(widget, label: str, name: str, default, suffix: str = "", **options):
    return kit.remembered(widget, label, P + name + suffix, default, **options)


def task_picker(suffix: str = ""):
    """The task radio and its inputs (keys end in `suffix`: each compared side has its own)."""
    kind = ask(st.radio, "Task", "task_kind", "ioi", suffix, options=list(TASK_LABELS),
               format_func=TASK_LABELS.get, horizontal=True)
    with st.container(border=True):
        return kind, task_builder(kind, suffix)


def task_builder(kind: str, suffix: str = ""):
    if kind == "ioi":
        n = ask(st.slider, "Number of prompts", "ioi_n", 8, suffix, min_value=2, max_value=32)
        return partial(tasks.ioi_task, n_prompts=int(n))
    if kind == "agreement":
        sentence = ask(st.text_input, "Sentence", "sentence",
                       tasks.DEFAULT_AGREEMENT_SENTENCE, suffix)
        return partial(tasks.agreement_task, sentence=sentence)
    if kind == "induction":
        length = ask(st.number_input, "Tokens per sequence", "induction_length",
                     induction.DEFAULT_LENGTH, suffix, min_value=induction.MIN_LENGTH, step=1)
        n = ask(st.slider, "Number of sequences", "induction_n", induction.DEFAULT_SEQUENCES,
                suffix, min_value=2, max_value=32)
        return partial(induction.induction_task, length=int(length), n_sequences=int(n))
    if kind == "fact":
        fact = tasks.DEFAULT_FACTS[0]
        prompt = ask(st.text_input, "Prompt", "fact_prompt", fact.prompt, suffix)
        answer = ask(st.text_input, "Answer (one token)", "fact_answer", fact.answer, suffix)
        return partial(tasks.fact_task, prompt=prompt, answer=answer, corruption="subject")
    left, right = st.columns(2)
    clean = ask(left.text_input, "Clean prompt", "clean", kit.DEFAULT_PROMPT, suffix)
    corrupted = ask(right.text_input, "Corrupted prompt", "corrupted", kit.DEFAULT_PROMPT_B,
                    suffix)
    correct = ask(left.text_input, "Correct answer", "correct", "Mary", suffix)
    wrong = ask(right.text_input, "Wrong answer", "wrong", "John", suffix)
    return partial(tasks.custom_task, clean=clean, corrupted=corrupted, correct=correct,
                   wrong=wrong)


@st.fragment
def circuit_view(run, side: kit.Side) -> None:
    """The circuit at the slider's size, re-measured (exact ablate-outside) at every move."""
    total = run.scores.n_edges
    selection = kit.remembered(st.radio, "Select by", side.key(P + "select_by"), "top_n",
                               options=list(SELECT_BY), format_func=SELECT_BY.get,
                               horizontal=True)
    if selection == "threshold":
        ranked = run.scores.ranked(min(50, total))
        default = round(abs(ranked[-1][3]), 6) if ranked else 0.0
        value = float(kit.remembered(st.number_input, "Score threshold (|score| at least)",
                                     side.key(P + "threshold"), default, min_value=0.0,
                                     format="%.6f"))
    else:
        value = int(kit.remembered(st.slider, "Edges in the circuit", side.key(P + "n_edges"),
                                   min(50, total), min_value=1, max_value=min(total, 2000)))
    with kit.reported_errors():
        view = view_circuit(side.model, run, value, selection)
        kit.metric_row({"F (held-out)": f"{view.measured.faithfulness:.3f}",
                        "Completeness": f"{view.measured.completeness:.3f}",
                        "Edges kept": f"{view.circuit.n_edges}"})
        st.caption(f"{view.circuit.n_edges} of {total} edges kept. Normalisation shown: {md_escape(view.measured.normalisation)}. "
                   "TransformerLens divides by the clean/corrupted gap instead; the two agree "
                   "under resample ablation.")
        shown = kit.show(view, key=side.key(P + "graph"))
        kit.export_buttons(view, shown, key=side.key(P + "export.graph"), name="circuit")
        st.download_button("Graph JSON (nodes and weighted links)",
                           data=lambda: report.graph_json(view), file_name="circuit_graph.json",
                           mime="application/json", key=side.key(P + "graph_json"),
                           on_click="ignore")
        st.subheader("Components and their direct effects")
        effects = component_direct_effects(side.model, view.circuit, run.held_out)
        shown = kit.show(effects, key=side.key(P + "effects"))
        kit.export_buttons(effects, shown, key=side.key(P + "export.effects"))
        st.page_link("pages/logit_lens.py", label="Per-prompt direct logit attribution: the "
                     "Logit lens page", icon=":material/layers:")
        robust = None
        if st.checkbox("Robustness panel (all ablations, two prompt splits)",
                       key=side.key(P + "robust")):
            robust = robustness(side.model, view.circuit, run.discovery, run.held_out)
            kit.show(robust, key=side.key(P + "robustness"))
        kit.explain_panel(view, key=side.key(P + "explain"), curve=run.curve, robust=robust)


def view(side: kit.Side) -> None:
    task = signature = None
    kind, build_task = shared_task
    if tasks_per_side():
        kind, build_task = task_picker(side.suffix)  # each side its own task
    try:
        task = build_task(side.model)
        signature = (side.model.name, kind, task, method, ablation)
    except InterpError as error:
        kit.show_error(error)
    run = kit.result_on_click(side.key(P + "run"), signature, clicked and task is not None,
                              ACTION, run_circuits, side.model, task, method, ablation)
    if run is None:
        st.caption(f"Press {ACTION}: the defaults run at once.")
        return
    with kit.reported_errors():
        circuit_view(run, side)
        shown = kit.show(run.curve, key=side.key(P + "curve"))
        kit.export_buttons(run.curve, shown, key=side.key(P + "export.curve"))
        st.subheader("Estimator audit")
        shown = kit.show(run.audit, key=side.key(P + "audit"))
        kit.export_buttons(run.audit, shown, key=side.key(P + "export.audit"))


def tasks_per_side() -> bool:
    """Whether the two sides compare two tasks (each draws its own task picker)."""
    return kit.compare_mode(kit.current_page(view)) == kit.COMPARE_INPUTS


kit.require_app_shell()
st.title("Circuits")
kit.how_to_read()
st.write("Score every connection between the model's components on clean/corrupted prompt "
         "pairs, keep the strongest, and ablate everything else: a faithful circuit alone keeps "
         "the task's behaviour.")
shared_task = (None, None)
if not tasks_per_side():
    shared_task = task_picker()
left, right = st.columns(2)
method = ask(left.radio, "Estimator", "method", "eap_ig", options=["eap", "eap_ig"],
             format_func=METHOD_LABELS.get, horizontal=True)
ablation = ask(right.radio, "Ablation", "ablation", "resample", options=list(ABLATION_KINDS),
               horizontal=True)
clicked = st.button(ACTION, type="primary", key=P + "go", icon=":material/hub:")
kit.for_each_side(view)
