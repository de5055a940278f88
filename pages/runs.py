"""Runs: which experiments have been kept, how do two of them differ, and can they be shared?"""

from __future__ import annotations

import json
import time

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from interp import report
from interp.errors import InterpError
from interp.explain import md_escape
from interp.runs import Comparison, RunStore, SavedRun
from pages import kit
from pages.kit.links import run_link
from pages.kit.runs import run_store

P = "runs."
ALL = "All"
NOTHING = ""  # "compare with nothing"


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def run_table(store: RunStore, found) -> None:
    rows = [{"saved": stamp(run.created_at), "page": run.page, "title": run.title,
             "model": run.model_name, "size (kB)": round(run.size_bytes / 1024, 1),
             "tensors kept": not run.tensors_omitted, "id": run.id} for run in found]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=P + "table")


def show_run(store: RunStore, run: SavedRun, key: str) -> None:
    record = run.record
    st.markdown(f"**{md_escape(record.title or record.method)}** · page `{record.page}` · "
                f"model `{md_escape(record.model.name)}` · {stamp(run.created_at)}")
    for warning in run.warnings:
        st.warning(md_escape(warning))
    for prompt in record.prompts:
        st.text(f"Prompt: {prompt}")
    if record.options:
        st.json(record.options, expanded=False)
    for index, spec in enumerate(record.figures):
        st.plotly_chart(pio.from_json(spec), key=f"{key}.figure.{index}")
    for name, data in record.tables.items():
        with st.expander(f"Table: {name}"):
            st.code(data.decode("utf-8", "replace")[:5000], language=None)
    if record.explanation:
        with st.expander(f"Explanation ({record.explanation_source or 'template'})"):
            st.markdown(record.explanation)
    chain = store.lineage(run.id)
    if chain:
        st.caption("Built from: " + " ← ".join(
            f"{'  ' * (step.depth - 1)}{md_escape(step.run.title) if step.run else 'a run not in this store'}"
            f" (`{step.content_hash[:10]}`)" for step in chain))
    st.caption(f"Link to this run: {run_link(run.id)}")
    st.caption(f"Run `{run.id}` · content hash `{run.content_hash[:16]}` · "
               f"{len(record.calls)} interp call(s) recorded · versions: "
               + ", ".join(f"{name} {version}" for name, version in record.versions.items()))


def opened_runs(store: RunStore, ids: list[str]) -> list[SavedRun]:
    return [store.open(run_id) for run_id in ids]


def actions(store: RunStore, run: SavedRun, labels: dict[str, str]) -> None:
    left, right = st.columns(2)
    with left.popover("Download", icon=":material/download:"):
        st.download_button("Run (.zip)", data=lambda: store.export_zip(run.id),
                           file_name=f"run-{run.id[:8]}.zip", mime="application/zip",
                           key=P + "zip", on_click="ignore")
        in_report = kit.remembered(st.multiselect, "Runs in the report", P + "report_runs",
                                   [run.id], options=list(labels), format_func=labels.get)
        in_report = in_report or [run.id]
        st.download_button(
            "Report (HTML)", data=lambda: report.html_report(opened_runs(store, in_report)),
            file_name=f"report-{run.id[:8]}.html", mime="text/html", key=P + "report",
            on_click="ignore")
        st.download_button(
            "Report (Markdown)",
            data=lambda: report.markdown_report(opened_runs(store, in_report)).encode("utf-8"),
            file_name=f"report-{run.id[:8]}.md", mime="text/markdown", key=P + "report.md",
            on_click="ignore")
    with right.popover("Delete", icon=":material/delete:"):
        st.write("Delete this run from the store? This can't be undone.")
        if st.button("Delete run", key=P + "delete", type="primary"):
            try:
                store.delete(run.id)
            except InterpError as error:
                kit.show_error(error)
            else:
                kit.forget(P + "open")
                st.rerun()


def show_comparison(comparison: Comparison) -> None:
    st.subheader("Compared")
    if not comparison.same_page:
        st.info("These runs come from different pages: only their inputs are compared.")
    if comparison.option_changes:
        st.dataframe(pd.DataFrame([{"setting": name, "first": json.dumps(a), "second": json.dumps(b)}
                                   for name, (a, b) in comparison.option_changes.items()]),
                     hide_index=True, key=P + "changes")
    else:
        st.caption("Same model, prompts and options.")
    columns = st.columns(2)
    for column, run, side in zip(columns, (comparison.left, comparison.right), ("a", "b"),
                                 strict=True):
        with column:
            st.markdown(f"**{md_escape(run.label)}**")
            for index, spec in enumerate(run.record.figures):
                st.plotly_chart(pio.from_json(spec), key=f"{P}compare.{side}.{index}")
    if comparison.differences:
        rows = [{"tensor": name, "shape": "×".join(map(str, diff.shape)) or "scalar",
                 "largest |second − first|": float(diff.abs().max()) if diff.numel() else 0.0}
                for name, diff in comparison.differences.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=P + "differences")
        name = kit.remembered(st.selectbox, "Difference map of", P + "difference",
                              rows[0]["tensor"], options=[row["tensor"] for row in rows])
        diff = comparison.differences[name]
        matrix = diff.reshape(1, -1) if diff.dim() < 2 else diff.reshape(-1, diff.shape[-1])
        figure = go.Figure(go.Heatmap(z=matrix.tolist(), colorscale="RdBu", zmid=0))
        figure.update_layout(title=f"{name}: second minus first", height=360)
        st.plotly_chart(figure, key=P + "difference.chart")
        st.caption("Red: the second run's value is higher; blue: lower. Rows beyond two "
                   "dimensions are stacked.")
    for name, (a, b) in comparison.shape_mismatches.items():
        st.caption(f"{name}: shapes differ ({a} vs {b}), no difference drawn.")


def import_box(store: RunStore) -> None:
    with st.expander("Import a run (.zip)"):
        uploaded = st.file_uploader("Run file", type=["zip"], key=P + "upload")
        if uploaded is not None and st.button("Import", key=P + "import"):
            try:
                saved = store.import_zip(uploaded.getvalue())
            except InterpError as error:
                kit.show_error(error)
            else:
                st.success(f"Imported run `{saved.id}`.")


kit.require_app_shell()
st.title("Runs")
st.write("Which experiments have been kept, how do two of them differ, and can they be shared? "
         "Every page's Export menu has Save run; saved runs are listed here to reopen, compare, "
         "download as a zip or a self-contained report, or delete.")
try:
    store = run_store()
except InterpError as error:
    kit.show_error(error)
    st.stop()
st.caption(f"Store: {md_escape(store.shown_url)}")
for warning in store.warnings:
    st.warning(md_escape(warning))
left, middle, right = st.columns(3)
page = kit.remembered(left.selectbox, "Page", P + "page", ALL, options=[ALL, *store.pages()])
model = kit.remembered(middle.selectbox, "Model", P + "model", ALL, options=[ALL, *store.models()])
text = kit.remembered(right.text_input, "Text", P + "text", "",
                      placeholder="words in a title, prompt or option")
found = store.list(page=None if page == ALL else page, model=None if model == ALL else model,
                   text=text)
for warning in found.warnings:
    st.warning(md_escape(warning))
import_box(store)
if not found.runs:
    st.info("No saved runs match. Run an analysis on any page, then press Save run in its "
            "Export menu.")
    st.stop()
run_table(store, found)
labels = {run.id: f"{stamp(run.created_at)} · {run.title} · {run.model_name}" for run in found}
ids = list(labels)
chosen = kit.remembered(st.selectbox, "Open", P + "open", ids[0], options=ids,
                        format_func=labels.get)
other = kit.remembered(st.selectbox, "Compare with", P + "compare", NOTHING,
                       options=[NOTHING, *[i for i in ids if i != chosen]],
                       format_func=lambda i: labels.get(i, "(nothing)"))
try:
    opened = store.open(chosen)
    actions(store, opened, labels)
    if other == NOTHING:
        show_run(store, opened, P + "open")
    else:
        show_comparison(store.compare(chosen, other))
except InterpError as error:
    st.warning(md_escape(str(error)))
