"""Sparse autoencoders: train one on a model's activations, load one from SAELens, browse what
its features fire on and write, and see which fire on a prompt."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from interp import sae as saes
from interp.errors import InterpError
from interp.explain import md_escape
from interp.sae.buffer import hook_width
from interp.sae.features import FeatureContext
from interp.sae.forms import MORE_TRAINING_FIELDS, training_fields, training_setup
from interp.sae.reporting import saelens_zip
from interp.sae.runs import (
    assess,
    assess_loaded,
    bundled_corpus,
    corpus_from_upload,
    train_on_corpus,
)
from pages import kit

ACTION = "Train SAE"
P = "sae."  # this page's session-state keys
TRAINER = P + "trainer"  # the running trainer, kept so a stopped run keeps its best state


def ask(widget, label: str, name: str, default, **options):
    return kit.remembered(widget, label, P + name, default, **options)


def corpus_input() -> tuple[str, list[str]]:
    source = ask(st.radio, "Corpus", "corpus", "bundled", options=["bundled", "upload"],
                 format_func={"bundled": "Bundled sample (assets/sae)",
                              "upload": "Upload a text file"}.get, horizontal=True)
    if source == "upload":
        upload = st.file_uploader("Text file, one example per line", type=["txt"],
                                  key=P + "upload")
        if upload is not None:
            return f"upload:{upload.name}:{upload.size}", corpus_from_upload(
                upload.getvalue().decode("utf-8", errors="replace"))
        st.caption("No file yet: the bundled sample is used.")
    return "bundled", bundled_corpus()


def training_inputs(model) -> tuple[str, saes.TrainingConfig, int]:
    n_layers = model.info.n_layers
    chosen = kit.input_form(training_fields(n_layers), P)
    with st.expander("More settings"):
        chosen |= kit.input_form(MORE_TRAINING_FIELDS, P)
    return training_setup(n_layers, **chosen)


def recover_stopped_run(model) -> None:
    """A run interrupted by Stop (or any rerun) left its trainer: keep its best state."""
    trainer = st.session_state.pop(TRAINER, None)
    if trainer is None or trainer.step == 0:
        return
    trained = trainer.best(stopped_early=True)
    with kit.reported_errors():
        run = assess(model, trained.sae, trainer.buffer, "trained", trained)
    kit.run_and_remember(P + "trained", ("stopped", id(trainer)), lambda: run)
    st.info(f"Training was stopped at step {trainer.step}; the best state (step "
            f"{trained.best_step}) is kept.")


def train_tab(side: kit.Side, corpus_key: str, texts: list[str]) -> None:
    model = side.model
    with kit.reported_errors():
        hook, config, max_tokens = training_inputs(model)
    signature = (model.name, hook, config, max_tokens, corpus_key)
    left, right = st.columns(2)
    clicked = left.button(ACTION, type="primary", key=P + "train", icon=":material/play_arrow:")
    right.button("Stop training", key=P + "stop", help="Stops at the next step and keeps the "
                 "best state so far.")
    recover_stopped_run(model)
    if clicked:
        live = st.empty()
        points: list[dict] = []

        def draw(point: saes.TrainingPoint) -> None:
            points.append({"step": point.step, "L0": point.l0,
                           "explained variance": point.explained_variance})
            live.line_chart(pd.DataFrame(points).set_index("step"), height=200)

        with kit.reported_errors():
            try:
                with kit.progress_reporter("Collecting activations ...") as report:
                    kit.run_and_remember(
                        P + "trained", signature, train_on_corpus, model, texts, hook, config,
                        max_tokens, progress=report, on_point=draw,
                        on_trainer=lambda t: st.session_state.__setitem__(TRAINER, t))
            except InterpError:
                st.session_state.pop(TRAINER, None)
                raise
        # Not reached when Stop (or any rerun) interrupts the script: the trainer stays for
        # `recover_stopped_run` on the next run.
        st.session_state.pop(TRAINER, None)
        live.empty()
    kit.stale_notice(P + "trained", signature, ACTION)
    run = kit.last_result(P + "trained")
    if run is None:
        st.caption(f"Press {ACTION}: the defaults train a small TopK SAE in well under a minute "
                   "on the demo model.")
        return
    shown = kit.show(run.trained, key=P + "curves")
    kit.export_buttons(run.trained, shown, key=P + "export.curves")
    stability_view(model, run)


def stability_view(model, run) -> None:
    if st.button("Check seed stability (trains once more, another seed)", key=P + "stability"):
        with kit.reported_errors(), st.spinner("Training a second SAE ..."):
            kit.run_and_remember(P + "stability", id(run), saes.seed_stability, run.buffer,
                                 run.trained, device=model.device)
    stability = kit.last_result(P + "stability")
    if stability is not None and not kit.is_stale(P + "stability", id(run)):
        kit.show(stability, key=P + "stability.chart")


def load_tab(side: kit.Side, corpus_key: str, texts: list[str]) -> None:
    model = side.model
    folder = ask(st.text_input, "SAELens folder on this machine (cfg.json + "
                 "sae_weights.safetensors)", "folder", "")
    if not folder.strip():
        st.caption("For GPT-2 small, e.g. one hook's folder of the gpt2-small-res-jb release.")
        return
    with kit.reported_errors():
        cfg = saes.read_cfg(folder)
        with st.expander("cfg.json", expanded=False):
            st.json(cfg)
        sae = saes.load_saelens(folder, device=model.device)
        saes.check_fits(sae, model, hook_width(model, sae.config.hook_name))
        st.caption(f"{sae.config.d_sae:,} features ({sae.config.architecture}) reading "
                   f"{sae.config.d_in} numbers at `{md_escape(sae.config.hook_name)}`; "
                   f"inputs centred over d_model: {'yes' if sae.config.centre_input else 'no'}; "
                   f"its width matches {md_escape(model.info.label)}.")
        if st.button("Load SAE", key=P + "load"):
            with kit.progress_reporter("Collecting activations ...") as report:
                kit.run_and_remember(P + "loaded", (model.name, folder, corpus_key),
                                     assess_loaded, model, sae, folder, texts, progress=report)


def active_run():
    runs = {name: kit.last_result(P + name) for name in ("trained", "loaded")}
    runs = {name: run for name, run in runs.items() if run is not None}
    if len(runs) > 1:
        chosen = ask(st.radio, "SAE", "active", "trained", options=list(runs),
                     format_func={"trained": "Trained here", "loaded": "Loaded"}.get,
                     horizontal=True)
        return runs[chosen]
    return next(iter(runs.values()), None)


def quality_view(run) -> None:
    m = run.metrics
    kit.metric_row({"L0": f"{m.l0:.1f}", "Explained var.": f"{m.explained_variance:.3f}"})
    kit.metric_row({"CE loss recovered": f"{m.loss_recovered:.3f}",
                    "KL to clean": f"{m.splice.kl_to_clean:.4f}"})
    shown = kit.show(m, key=P + "density")
    kit.export_buttons(run.scan, shown, key=P + "export.density", name="sae_features")
    st.download_button("SAE in SAELens format (.zip)", data=lambda: saelens_zip(run),
                       file_name="sae_saelens.zip", mime="application/zip", key=P + "zip",
                       on_click="ignore")
    kit.explain_panel(run, key=P + "explain.run")


def highlighted(context: FeatureContext) -> str:
    """A context as escaped HTML with each token shaded by the activation, the example marked."""
    top = max(max(context.activations), 1e-9)
    parts = []
    for index, (token, value) in enumerate(zip(context.tokens, context.activations, strict=True)):
        shade = f"rgba(255, 140, 0, {min(max(value / top, 0), 1) * 0.6:.2f})"
        border = "border-bottom: 2px solid #c00;" if index == context.focus else ""
        parts.append(f'<span style="background:{shade};{border}">'
                     f"{md_escape(html.escape(token))}</span>")
    return "".join(parts) + f" &nbsp;<small>({context.value:.3g})</small>"


@st.fragment
def browse_tab(side: kit.Side, run) -> None:
    model = side.model
    by = ask(st.radio, "Sort features by", "sort", "frequency",
             options=["frequency", "max_activation"], horizontal=True,
             format_func=lambda v: v.replace("_", " "))
    table = kit.show(run.scan, key=P + "table", by=by)
    kit.export_buttons(run.scan, table, key=P + "export.table")
    order = run.scan.order(by)
    feature = ask(st.selectbox, "Feature", "feature", order[0], options=order)
    stability = kit.last_result(P + "stability")
    single = None
    if stability is not None and run.trained is not None and not kit.is_stale(P + "stability",
                                                                              id(run)):
        single = not bool(stability.matched[feature])
    with kit.reported_errors():
        report = kit.run_and_remember(P + "report", (id(run), feature, single),
                                      saes.feature_report, model, run.sae, run.buffer, feature,
                                      single_seed=single)
    if single:
        st.warning("Found by one seed only: an SAE trained from another seed has no feature "
                   "within decoder cosine 0.9 of this one.")
    shown = kit.show(report, key=P + "card")
    left, right = st.columns(2)
    left.markdown("**Pushes up**")
    left.dataframe(pd.DataFrame(report.top_logits, columns=["token", "effect"]), hide_index=True)
    right.markdown("**Pushes down**")
    right.dataframe(pd.DataFrame(report.bottom_logits, columns=["token", "effect"]),
                    hide_index=True)
    st.markdown("**Top contexts**")
    for context in report.top_contexts:
        st.markdown(highlighted(context), unsafe_allow_html=True)
    for band, contexts in report.bands:
        with st.expander(f"Examples from {band}"):
            for context in contexts:
                st.markdown(highlighted(context), unsafe_allow_html=True)
    kit.export_buttons(report, shown, key=P + "export.card")
    kit.explain_panel(report, key=P + "explain.card")


@st.fragment
def explore_tab(side: kit.Side, run) -> None:
    prompt = ask(st.text_input, "Prompt", "prompt", side.prompt or kit.DEFAULT_PROMPT)
    with kit.reported_errors():
        result = kit.run_and_remember(P + "explore", (id(run), prompt), saes.prompt_features,
                                      side.model, run.sae, prompt)
    shown = kit.show(result, key=P + "explore.chart")
    st.dataframe(pd.DataFrame({"token": result.tokens, "top features": [
        ", ".join(f"F{f} ({v:.2f})" for f, v in tops) for tops in result.per_token]}),
        hide_index=True)
    kit.export_buttons(result, shown, key=P + "export.explore")


def view(side: kit.Side) -> None:
    train, load, browse, explore = st.tabs(["Train", "Load", "Browse", "Explore"])
    with train:
        corpus_key, texts = corpus_input()
        train_tab(side, corpus_key, texts)
    with load:
        load_tab(side, corpus_key, texts)
    run = active_run()
    for tab in (browse, explore):
        with tab:
            if run is None:
                st.info("Train an SAE (Train tab) or load one (Load tab) first.")
    if run is None:
        return
    with train:
        quality_view(run)
    with browse:
        browse_tab(side, run)
    with explore:
        explore_tab(side, run)


kit.require_app_shell()
st.title("Sparse autoencoders")
kit.how_to_read()
st.write("A sparse autoencoder rewrites one activation of the model as a sum of a few learned "
         "directions, features, out of many. Train one here on the CPU or load one saved by "
         "SAELens, then see what each feature fires on and what it writes.")
kit.for_each_side(view)
