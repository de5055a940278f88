"""Reports that reproduce themselves: one self-contained HTML file (or Markdown) for saved runs.

The HTML holds, per run, its inputs, every figure as an interactive Plotly chart (plotly.js is
inlined once, so the file opens offline and each figure's data is written once), its tables, the
explanation, the library versions and the `interp` calls that made it, and the run record itself
(its numbers as safetensors, base64) in a JSON script block. `reproduce_report` reads that
record back, makes the calls again, compares the numbers to tolerance and returns the report
stamped "reproduced", or listing what differs.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Sequence

from interp.errors import CorruptRunError
from interp.reproduce import Reproduction, reproduce
from interp.runs import (
    RunRecord,
    SavedRun,
    record_fields,
    record_from_fields,
    table_rows,
    tensors_to_bytes,
)

RECORD_SCRIPT_ID = "workbench-run-records"
TABLE_ROWS_SHOWN = 50
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
.stamp { padding: .6em 1em; border-radius: 6px; margin: 1em 0; }
.stamp.ok { background: #e6f4ea; } .stamp.differs { background: #fdecea; }
.stamp.unchecked { background: #f1f3f4; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ccc;
padding: 2px 6px; } pre { background: #f6f8fa; padding: .5em; overflow-x: auto; }
"""


# Every chart is drawn from the embedded record, so each figure's data is in the file once.
DRAW_FIGURES_JS = f"""
(function() {{
  var runs = JSON.parse(document.getElementById("{RECORD_SCRIPT_ID}").textContent);
  document.querySelectorAll("div.figure").forEach(function(div) {{
    var spec = runs[+div.dataset.run].record.figures[+div.dataset.figure];
    Plotly.newPlot(div, spec.data || [], spec.layout || {{}}, {{responsive: true}});
  }});
}})();
"""


def script_json(value) -> str:
    """JSON safe inside a <script> element (no "</script>" can close it early)."""
    return (json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026"))


def call_text(call) -> str:
    """A recorded call as the Python that makes it again."""
    def argument(value) -> str:
        if isinstance(value, dict) and set(value) == {"$model"}:
            return f"load_model({value['$model']!r})"
        return repr(value)

    module, _, name = call.function.partition(":")
    parts = [argument(v) for v in call.args] + [f"{k}={argument(v)}" for k, v in
                                                 call.kwargs.items()]
    made = f"{module}.{name}({', '.join(parts)})"
    return f"{made}.{call.part}" if call.part else made


def embedded_record(run: SavedRun) -> dict:
    """What a report keeps of a run to rebuild it: its record (figures as Plotly JSON objects,
    which the charts are drawn from) and its tensors as base64 safetensors."""
    fields = record_fields(run.record)
    fields["figures"] = [json.loads(spec) for spec in run.record.figures]
    return {"id": run.id, "content_hash": run.content_hash, "created_at": run.created_at,
            "tensors_omitted": run.tensors_omitted, "record": fields,
            "tables": {name: data.decode("utf-8") for name, data in run.record.tables.items()},
            "tensors": base64.b64encode(tensors_to_bytes(run.record.tensors)).decode()
            if run.record.tensors else ""}


def stamp_html(outcome: Reproduction | None) -> str:
    """The report's stamp: not yet checked, reproduced, or the differences found."""
    if outcome is None:
        return ('<div class="stamp unchecked">Not yet reproduced: run '
                "<code>interp.report.reproduce_report</code> on this file to check it.</div>")
    if outcome.reproduced:
        return (f'<div class="stamp ok" data-stamp="reproduced"><b>Reproduced</b> on '
                f"{time.strftime('%Y-%m-%d %H:%M')}: all {outcome.compared} recorded values "
                "came back within tolerance.</div>")
    items = "".join(f"<li>{html.escape(text)}</li>" for text in outcome.differences)
    return (f'<div class="stamp differs" data-stamp="differs"><b>Not reproduced</b> on '
            f"{time.strftime('%Y-%m-%d %H:%M')}; what differs:<ul>{items}</ul></div>")


def table_html(data: bytes) -> str:
    """An HTML table of CSV bytes (its first rows; every cell escaped)."""
    rows = table_rows(data)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows[1:TABLE_ROWS_SHOWN + 1])
    more = (f"<p>{len(rows) - 1 - TABLE_ROWS_SHOWN} more rows are in the run's CSV.</p>"
            if len(rows) - 1 > TABLE_ROWS_SHOWN else "")
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def run_section(index: int, run: SavedRun, outcome: Reproduction | None) -> str:
    """One run's section of the report: title, stamp, inputs, figures, tables,
    explanation."""
    record = run.record
    parts = [f"<section id=\"run-{index}\"><h2>{html.escape(record.title or record.method)}</h2>",
             stamp_html(outcome),
             f"<p>Page <code>{html.escape(record.page)}</code> · method "
             f"<code>{html.escape(record.method)}</code> · model "
             f"<code>{html.escape(record.model.name)}</code> "
             f"(<code>{html.escape(record.model.revision[:23])}</code>) · saved "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(run.created_at))} · run "
             f"<code>{run.id}</code></p>"]
    parts += [f"<p>Prompt: <q>{html.escape(prompt)}</q></p>" for prompt in record.prompts]
    if record.options:
        parts.append("<h3>Options</h3><pre>" + html.escape(json.dumps(
            dict(record.options), indent=1, ensure_ascii=False)) + "</pre>")
    for warning in run.warnings:
        parts.append(f"<p><i>{html.escape(warning)}</i></p>")
    parts += [f'<div class="figure" data-run="{index}" data-figure="{number}"></div>'
              for number in range(len(record.figures))]
    for name, data in record.tables.items():
        parts.append(f"<h3>Table: {html.escape(name)}</h3>{table_html(data)}")
    if record.explanation:
        parts.append(f"<h3>Explanation ({html.escape(record.explanation_source or 'template')})"
                     f"</h3><pre>{html.escape(record.explanation)}</pre>")
    if record.calls:
        code = "\n".join(["from interp import load_model", "import interp",
                          *(call_text(call) for call in record.calls)])
        parts.append(f"<h3>The interp calls</h3><pre>{html.escape(code)}</pre>")
    parts.append("<h3>Versions</h3><p>" + html.escape(", ".join(
        f"{k} {v}" for k, v in record.versions.items())) + "</p></section>")
    return "\n".join(parts)


def html_report(runs: Sequence[SavedRun], outcomes: Sequence[Reproduction | None] | None = None,
                title: str = "GPT-2 Interpretability Workbench report") -> bytes:
    """The report of `runs` (in order), each stamped with its reproduction outcome if given."""
    from plotly.offline import get_plotlyjs

    outcomes = list(outcomes) if outcomes is not None else [None] * len(runs)
    sections = "\n".join(run_section(i, run, outcome)
                         for i, (run, outcome) in enumerate(zip(runs, outcomes, strict=True)))
    records = script_json([embedded_record(run) for run in runs])
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1>{sections}"
            f'<script type="application/json" id="{RECORD_SCRIPT_ID}">{records}</script>'
            f"<script>{DRAW_FIGURES_JS}</script></body></html>")
    return page.encode("utf-8")


def markdown_report(runs: Sequence[SavedRun]) -> str:
    """The same report as Markdown (figures are named, not drawn: the HTML has them)."""
    lines = ["# GPT-2 Interpretability Workbench report", ""]
    for run in runs:
        record = run.record
        lines += [f"## {record.title or record.method}", "",
                  f"- page `{record.page}`, method `{record.method}`, model `{record.model.name}` "
                  f"(`{record.model.revision[:23]}`), run `{run.id}`", ""]
        lines += [f"> {prompt}" for prompt in record.prompts] + [""]
        if record.options:
            lines += ["```json", json.dumps(dict(record.options), indent=1), "```", ""]
        if record.figures:
            lines += [f"{len(record.figures)} figure(s): interactive in the HTML report.", ""]
        for name, data in record.tables.items():
            rows = table_rows(data)[:TABLE_ROWS_SHOWN + 1]
            if rows:
                lines += [f"### Table: {name}", "", "| " + " | ".join(rows[0]) + " |",
                          "|" + "---|" * len(rows[0])]
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                          for row in rows[1:]] + [""]
        if record.explanation:
            lines += ["### Explanation", "", record.explanation, ""]
        if record.calls:
            lines += ["### The interp calls", "", "```python",
                      *(call_text(call) for call in record.calls), "```", ""]
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in record.versions.items()), ""]
    return "\n".join(lines)


def read_report(report: bytes | str) -> list[SavedRun]:
    """The runs a report embeds (figures excepted: they are kept in its charts)."""
    from safetensors.torch import load as load_safetensors

    text = report.decode("utf-8") if isinstance(report, bytes) else report
    opening = f'<script type="application/json" id="{RECORD_SCRIPT_ID}">'
    start = text.rfind(opening)
    end = text.find("</script>", start)
    if start < 0 or end < 0:
        raise CorruptRunError("This file holds no Workbench run record.")
    try:
        entries = json.loads(text[start + len(opening):end])
        runs = []
        for entry in entries:
            tensors = load_safetensors(base64.b64decode(entry["tensors"])) if entry[
                "tensors"] else {}
            fields = dict(entry["record"])
            fields["figures"] = [json.dumps(spec) for spec in fields.get("figures", ())]
            tables = {name: text.encode("utf-8") for name, text in entry.get("tables", {}).items()}
            record: RunRecord = record_from_fields(fields, tensors, tables, b"")
            runs.append(SavedRun(entry["id"], entry["content_hash"], float(entry["created_at"]),
                                 record, 0, bool(entry["tensors_omitted"])))
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptRunError(f"The report's run record can't be read ({error}).") from error
    return runs


def reproduce_report(report: bytes | str, load_model: Callable | None = None,
                     **tolerance) -> bytes:
    """Re-run every run the report embeds and return the report stamped with the outcomes."""
    embedded = read_report(report)
    outcomes = [reproduce(run.record, load_model, **tolerance) for run in embedded]
    return html_report(embedded, outcomes)
