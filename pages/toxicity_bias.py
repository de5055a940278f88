"""Toxicity & bias: what the model says about people, measured, and where it fails."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from interp import behaviour, bias, toxicity
from interp.caching import secrets, shared_classifier
from interp.errors import ClassifierUnavailableError, InterpError, ModelUnavailableError
from interp.explain import md_escape
from interp.figures.toxicity_bias import top1_bars
from interp.settings import Settings
from pages import kit

ACTION = "Run all probes"
P = "toxbias."  # this page's session-state keys
TABS = ("Toxicity", "Bias probes", "Confidence & failure cases")
DISCLAIMER = (
    "**What these probes can and cannot show.** They measure this model's outputs on the "
    "prompts below: a toxicity score is one classifier's opinion (itself biased), a template "
    "probe is a handful of hand-written contexts, and a failure case is one prompt. They can "
    "show that a model *can* produce toxic text or *does* associate a group with a word here; "
    "they can't certify a model as safe or fair, nor say why it behaves so.")
PRIVACY = ("Nothing you type on this page is stored or logged: inputs and results live only in "
           "this browser session's memory (never in a cache shared with other sessions) and go "
           "when it ends. *Explain with Groq* sends a result's numbers and labels to Groq only "
           "when you press it.")
inputs: dict = {}  # drawn by the first side, read by the second: both run the same probes


def ask(widget, label: str, name: str, default, **options):
    return kit.remembered(widget, label, P + name, default, **options)


def on_first_side(side: kit.Side, name: str, draw):
    """Inputs drawn once, on the first side; the second side reads the same values."""
    if not side.suffix:
        inputs[name] = draw()
    return inputs[name]


def present(result, side: kit.Side, name: str) -> None:
    """A result's figure (or table) and caption, its exports and its Explain panel."""
    shown = kit.show(result, key=side.key(f"{P}{name}.figure"))
    kit.export_buttons(result, shown, key=side.key(f"{P}{name}.export"))
    kit.explain_panel(result, key=side.key(f"{P}{name}.explain"))


def chosen_classifier(model_type: str):
    """The shared classifier (a local checkpoint from the settings first), or None after
    saying exactly why none is available."""
    source = toxicity.ClassifierSource.from_settings(Settings.from_env(secrets()), model_type)
    if source.is_local:
        st.caption(f"Classifier: the local checkpoint set by {toxicity.CHECKPOINT_SETTING}.")
    try:
        with st.spinner(f"Loading {source.label} ..."):
            return shared_classifier(source.model_type, source.checkpoint, source.config_folder)
    except (ClassifierUnavailableError, ModelUnavailableError) as error:
        st.warning(md_escape(str(error)), icon=":material/block:")
        return None


def sampling_inputs(prefix: str, k: int, tokens: int) -> dict:
    return kit.input_form(toxicity.sampling_fields(k, tokens), P + prefix)


def classifier_input() -> str:
    return ask(st.selectbox, "Classifier (Detoxify)", "classifier", toxicity.DEFAULT_CLASSIFIER,
               options=list(toxicity.CLASSIFIER_TYPES))


def toxicity_inputs() -> dict:
    prompt = ask(st.text_area, "Prompt to continue", "tox_prompt", "The nurse said that",
                 height=70)
    options = sampling_inputs("tox_", 20, 30)
    go_on = ask(st.checkbox, "Generate even if the prompt is rated toxic", "tox_go_on", False)
    clicked = st.button("Sample and score", key=P + "tox_run")
    return dict(prompt=prompt, options=options, go_on=go_on, clicked=clicked)


def prompt_passes(classifier, chosen: dict) -> bool:
    """The input filter: warn before generating from a prompt the classifier rates toxic."""
    check = kit.run_and_remember(P + "tox_check", (classifier.name, chosen["prompt"],
                                                   chosen["options"]["threshold"]),
                                 toxicity.check_prompt, classifier, chosen["prompt"],
                                 chosen["options"]["threshold"])
    if not check.flagged:
        return True
    st.warning(f"The classifier rates this prompt {md_escape(check.category)} "
               f"({check.score:.2f}, above {check.threshold:g}). Continuations of it will "
               "likely be offensive." + ("" if chosen["go_on"] else
                                         " Tick the box above to generate anyway."))
    return chosen["go_on"]


def content_warning(result: toxicity.ContinuationsToxicity) -> None:
    category = result.scores.categories[0]
    with st.expander("Content warning: the highest-scoring samples (may be offensive)"):
        for index, score in result.scores.highest(category, 5):
            st.markdown(f"**{score:.3f}** ({md_escape(category)}): "
                        f"{md_escape(result.prompt)} *{md_escape(result.continuations[index])}*")


def toxicity_section(side: kit.Side) -> None:
    classifier = chosen_classifier(on_first_side(side, "classifier", classifier_input))
    if classifier is None:
        return
    chosen = on_first_side(side, "toxicity", toxicity_inputs)
    start = (chosen["clicked"] or run_all) and prompt_passes(classifier, chosen)
    options = chosen["options"]
    signature = side.signature(classifier.name, chosen["prompt"], tuple(options.items()))
    result = kit.result_on_click(side.key(P + "tox"), signature, start, "Sample and score",
                                 toxicity.continuations_toxicity, side.model, classifier,
                                 chosen["prompt"], options["k"], options["temperature"],
                                 options["top_p"], options["max_new_tokens"], options["seed"],
                                 options["threshold"])
    if result is None:
        return
    kit.metric_row({f"{c} > {result.threshold:g}": f"{result.share_above(c):.0%}"
                    for c in result.scores.categories[:4]})
    present(result, side, "tox")
    for note in result.notes:
        st.info(md_escape(note))
    content_warning(result)


def preset_chosen() -> None:
    preset = bias.probe_preset(st.session_state[P + "preset.widget"])
    kit.set_remembered(P + "templates", "\n".join(preset.templates))
    kit.set_remembered(P + "groups", ", ".join(preset.groups))
    kit.set_remembered(P + "targets", ", ".join(preset.targets))


def template_inputs() -> dict:
    default = bias.default_preset_name(kit.chosen_model_name())
    ask(st.selectbox, "Start from", "preset", default, options=list(bias.PROBE_PRESETS),
        on_change=preset_chosen)
    chosen = kit.input_form(bias.template_probe_fields(bias.probe_preset(default)), P)
    clicked = st.button("Run template probe", key=P + "template_run")
    return dict(chosen, templates=bias.template_lines(chosen["templates"]), clicked=clicked)


def template_section(side: kit.Side) -> None:
    st.subheader("Counterfactual templates")
    chosen = on_first_side(side, "templates", template_inputs)
    signature = side.signature(chosen["templates"], chosen["groups"], chosen["targets"])
    result = kit.result_on_click(side.key(P + "template"), signature,
                                 chosen["clicked"] or run_all, "Run template probe",
                                 bias.template_probe, side.model, chosen["templates"],
                                 chosen["groups"], chosen["targets"])
    if result is None:
        return
    shown = kit.show(result, key=side.key(P + "template.difference"))
    kit.show(result, key=side.key(P + "template.probs"), view="probabilities")
    st.dataframe(pd.DataFrame([{
        "target": c.target, "group": c.group, "vs": c.reference,
        "difference (points)": round(100 * c.difference, 2),
        "95% interval": f"{100 * c.ci_low:+.2f} to {100 * c.ci_high:+.2f}",
        "permutation p": round(c.p_value, 4), "share": round(c.share, 3),
    } for c in result.comparisons]), hide_index=True, key=side.key(P + "template.table"))
    kit.export_buttons(result, shown, key=side.key(P + "template.export"))
    kit.explain_panel(result, key=side.key(P + "template.explain"))


def pairs_inputs() -> dict:
    source = ask(st.radio, "Sentence pairs", "pairs_source", "bundled",
                 options=["bundled", "upload"], horizontal=True,
                 format_func={"bundled": "Bundled sample (24 pairs written for this project)",
                              "upload": "Upload a CSV"}.get)
    upload = None
    if source == "upload":
        upload = st.file_uploader("CSV with stereotype, anti_stereotype, bias_type (or "
                                  "CrowS-Pairs' sent_more, sent_less, stereo_antistereo, "
                                  "bias_type)", type=["csv"], key=P + "pairs_file")
    clicked = st.button("Compare sentence pairs", key=P + "pairs_run")
    return dict(source=source, upload=upload, clicked=clicked)


def chosen_pairs(chosen: dict):
    if chosen["source"] == "bundled":
        return bias.bundled_pairs(), "bundled sample"
    if chosen["upload"] is None:
        st.info("Choose a CSV file to compare its pairs.")
        return None, None
    return bias.read_pairs_csv(chosen["upload"].getvalue()), chosen["upload"].name


def pairs_section(side: kit.Side) -> None:
    st.subheader("Pairwise sentence likelihood (CrowS-Pairs style)")
    chosen = on_first_side(side, "pairs", pairs_inputs)
    try:
        pairs, source = chosen_pairs(chosen)
    except InterpError as error:
        kit.show_error(error)
        return
    if pairs is None:
        return
    result = kit.result_on_click(side.key(P + "pairs"), side.signature(pairs, source),
                                 chosen["clicked"] or run_all, "Compare sentence pairs",
                                 bias.pairwise_likelihood, side.model, pairs, source)
    if result is None:
        return
    present(result, side, "pairs")
    with st.expander("Every pair"):
        st.dataframe(pd.DataFrame({
            "bias type": [p.bias_type for p in result.pairs],
            "stereotype": [p.stereotype for p in result.pairs],
            "anti-stereotype": [p.anti_stereotype for p in result.pairs],
            "log P difference": result.difference.round(3)}), hide_index=True,
            key=side.key(P + "pairs.table"))


def group_toxicity_inputs() -> dict:
    chosen = kit.input_form(bias.GROUP_TOXICITY_FIELDS, P)
    options = sampling_inputs("group_", 8, 20)
    clicked = st.button("Sample per group", key=P + "group_run")
    return dict(chosen, options=options, clicked=clicked)


def group_toxicity_section(side: kit.Side) -> None:
    st.subheader("Toxicity of continuations per group")
    classifier = chosen_classifier(inputs["classifier"])
    if classifier is None:
        return
    chosen = on_first_side(side, "group_toxicity", group_toxicity_inputs)
    options = chosen["options"]
    signature = side.signature(classifier.name, chosen["template"], chosen["groups"],
                               tuple(options.items()))
    result = kit.result_on_click(side.key(P + "group"), signature, chosen["clicked"] or run_all,
                                 "Sample per group", bias.group_toxicity, side.model, classifier,
                                 chosen["template"], chosen["groups"], options["k"],
                                 options["temperature"], options["top_p"],
                                 options["max_new_tokens"], options["seed"],
                                 options["threshold"])
    if result is None:
        return
    present(result, side, "group")


def confidence_inputs() -> dict:
    return kit.input_form(behaviour.CONFIDENCE_FIELDS, P)


def confidence_section(side: kit.Side) -> None:
    st.subheader("Confidence along a text")
    chosen = on_first_side(side, "confidence", confidence_inputs)
    with kit.reported_errors():
        if chosen["mode"] == "text":
            trace = kit.run_and_remember(side.key(P + "confidence"),
                                         side.signature(chosen["text"], chosen["threshold"]),
                                         behaviour.confidence_along, side.model, chosen["text"],
                                         chosen["threshold"])
        else:
            trace = kit.run_and_remember(side.key(P + "confidence"),
                                         side.signature(chosen["text"], chosen["threshold"], "gen"),
                                         behaviour.confidence_of_generation, side.model,
                                         chosen["text"], threshold=chosen["threshold"])
    present(trace, side, "confidence")


def consistency_inputs() -> dict:
    table = kit.edited_table(P + "rewrites", pd.DataFrame({"rewrite": behaviour.DEFAULT_REWRITES}),
                             num_rows="dynamic", hide_index=True)
    answer = ask(st.text_input, "Answer", "answer", behaviour.DEFAULT_ANSWER)
    left, right = st.columns(2)
    add_edits = left.button("Add token edits of the first rewrite", key=P + "add_edits")
    clicked = right.button("Check consistency", key=P + "consistency_run")
    rewrites = tuple(str(r) for r in table["rewrite"].tolist() if str(r).strip())
    if add_edits and rewrites:
        extra = [e for e in behaviour.token_edits(rewrites[0]) if e not in rewrites]
        st.session_state[P + "rewrites"] = pd.DataFrame({"rewrite": [*rewrites, *extra]})
        st.session_state[P + "rewrites.version"] += 1
        st.rerun()
    return dict(rewrites=rewrites, answer=answer, clicked=clicked)


def consistency_section(side: kit.Side) -> None:
    st.subheader("Consistency under paraphrase and token edits")
    chosen = on_first_side(side, "consistency", consistency_inputs)
    result = kit.result_on_click(side.key(P + "consistency"),
                                 side.signature(chosen["rewrites"], chosen["answer"]),
                                 chosen["clicked"] or run_all, "Check consistency",
                                 behaviour.consistency, side.model, chosen["rewrites"],
                                 chosen["answer"])
    if result is None:
        return
    present(result, side, "consistency")


CASE_COLUMNS = ("name", "kind", "prompt", "answer", "negated")


def catalogue_inputs() -> dict:
    table = kit.edited_table(P + "cases", pd.DataFrame(
        [(c.name, c.kind, c.prompt, c.answer, c.negated) for c in behaviour.CATALOGUE],
        columns=CASE_COLUMNS), num_rows="dynamic", hide_index=True, column_config={
            "kind": st.column_config.SelectboxColumn(options=list(behaviour.FAILURE_KINDS))})
    clicked = st.button("Run failure cases", key=P + "cases_run")
    rows = table.fillna("").astype(str)
    return dict(rows=tuple(tuple(row) for row in rows[list(CASE_COLUMNS)].itertuples(
        index=False) if row[2].strip()), clicked=clicked)


def catalogue_section(side: kit.Side) -> None:
    st.subheader("Known failure cases, run live")
    chosen = on_first_side(side, "catalogue", catalogue_inputs)
    try:
        cases = tuple(behaviour.case_from_row(*row) for row in chosen["rows"])
    except InterpError as error:
        kit.show_error(error)
        return
    result = kit.result_on_click(side.key(P + "cases"), side.signature(cases),
                                 chosen["clicked"] or run_all, "Run failure cases",
                                 behaviour.run_catalogue, side.model, cases)
    if result is None:
        return
    present(result, side, "cases")
    st.plotly_chart(top1_bars(result), key=side.key(P + "cases.bars"))


def view(side: kit.Side) -> None:
    toxicity_tab, bias_tab, confidence_tab = st.tabs(TABS, key=side.key(P + "tabs"))
    with toxicity_tab:
        toxicity_section(side)
    with bias_tab:
        template_section(side)
        pairs_section(side)
        group_toxicity_section(side)
    with confidence_tab:
        confidence_section(side)
        consistency_section(side)
        catalogue_section(side)


kit.require_app_shell()
st.title("Toxicity & bias")
kit.how_to_read()
st.write("Does the model write toxic text, does it treat groups of people differently, and how "
         "sure is it of what it says? Each tab runs a probe on the loaded model; "
         f"**{ACTION}** runs every probe with the inputs shown.")
st.info(DISCLAIMER, icon=":material/info:")
st.caption(PRIVACY)
run_all = st.button(ACTION, type="primary", key=P + "run_all", icon=":material/play_arrow:")
kit.for_each_side(view)
