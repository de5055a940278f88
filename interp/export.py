"""Exporting any result: JSON with every number, CSV for tables, HTML for figures.

Results are frozen dataclasses; tensors and arrays become nested lists, so an export holds the
inputs, the options, the model and every number, and can be re-read without this package.
`to_csv(result)` writes the table of any result type with a registered CSV writer (heatmaps as
labelled matrices, ranked lists as rows); `has_csv` says whether a result is tabular.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from interp.induction import InductionCheck
from interp.patching import PatchingResult
from interp.patching.sweeps import RankedComponents
from interp.patching_tasks import VerbCurves
from interp.registry import TypeRegistry
from interp.tokens import export_labels


def plain(value):
    """Turn a result (dataclasses, tensors, arrays, tuples) into JSON-ready Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("screen_only")}
    if isinstance(value, torch.Tensor):
        return plain(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def to_json(result, **extra) -> bytes:
    """UTF-8 JSON of a result, with its type name and any extra fields (e.g. the app version)."""
    payload = {"result_type": type(result).__name__, **plain(extra), **plain(result)}
    return json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")


def table_to_csv(header: Sequence[str], rows: Sequence[Sequence]) -> bytes:
    """CSV bytes of a table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([plain(cell) for cell in row])
    return buffer.getvalue().encode("utf-8")


def matrix_to_csv(matrix, row_labels: Sequence[str], column_labels: Sequence[str],
                  corner: str = "") -> bytes:
    """CSV of a 2-D matrix (heatmap) with labelled rows and columns."""
    values = plain(matrix)
    rows = [[label, *row] for label, row in zip(row_labels, values, strict=True)]
    return table_to_csv([corner, *column_labels], rows)


def figure_to_html(figure) -> bytes:
    """A standalone interactive HTML file of a Plotly figure (Plotly's JS inlined, works offline)."""
    return figure.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


CSV_WRITERS = TypeRegistry("CSV writer")


def register_csv(result_type: type) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """Register the CSV writer of one tabular result type."""
    return CSV_WRITERS.register(result_type)


def has_csv(result) -> bool:
    """Whether a CSV writer is registered for the result's type."""
    return CSV_WRITERS.find(result) is not None


def to_csv(result, **options) -> bytes:
    """CSV bytes of any result type with a registered writer (`options` go to the writer)."""
    return CSV_WRITERS.lookup(result)(result, **options)


NPZ_WRITERS = TypeRegistry("NumPy .npz writer")


def register_npz(result_type: type) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """Register the .npz writer of a result type whose arrays are worth keeping as arrays."""
    return NPZ_WRITERS.register(result_type)


def has_npz(result) -> bool:
    """Whether an .npz writer is registered for the result's type."""
    return NPZ_WRITERS.find(result) is not None


def to_npz(result, **options) -> bytes:
    """.npz bytes of any result type with a registered writer (`options` go to the writer)."""
    return NPZ_WRITERS.lookup(result)(result, **options)


def arrays_to_npz(arrays: Mapping[str, object], metadata: Mapping | None = None) -> bytes:
    """A compressed .npz of named arrays (tensors or arrays), plus `metadata` as a JSON string
    under "metadata" (readable with `json.loads(str(npz["metadata"]))`)."""
    named = {name: value.detach().cpu().numpy() if isinstance(value, torch.Tensor)
             else np.asarray(value) for name, value in arrays.items()}
    if metadata is not None:
        named["metadata"] = np.array(json.dumps(plain(metadata), ensure_ascii=False))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **named)  # type: ignore[arg-type]  # numpy types **kwds as bool
    return buffer.getvalue()


@register_csv(PatchingResult)
def matrix_csv(result: PatchingResult) -> bytes:
    """The normalized map: rows are layers, columns heads or the clean prompt's positions."""
    rows = [f"L{layer}" for layer in range(result.values.shape[0])]
    if result.granularity == "head_pos":
        n_layers, n_heads, n_pos = result.normalized.shape
        return matrix_to_csv(result.normalized.reshape(-1, n_pos),
                             [f"L{layer} H{head}" for layer in range(n_layers)
                              for head in range(n_heads)],
                             export_labels(result.token_texts or result.tokens), corner="head")
    if result.granularity == "head":
        columns = [f"H{head}" for head in range(result.values.shape[1])]
    else:
        columns = export_labels(result.token_texts or result.tokens)
    return matrix_to_csv(result.normalized, rows, columns, corner="layer")


@register_csv(RankedComponents)
def ranked_csv(table: RankedComponents) -> bytes:
    """A ranked-components table as CSV bytes."""
    return table_to_csv(table.header, table.rows)


@register_csv(InductionCheck)
def induction_check_csv(check: InductionCheck) -> bytes:
    """Every head: patching effect, induction and previous-token scores, and the verdict of the
    heads the check lists."""
    verdicts = {(h.layer, h.head): h.verdict for h in check.heads}
    n_layers, n_heads = check.effects.shape
    rows = [(f"L{layer}H{head}", layer, head, float(check.effects[layer, head]),
             float(check.induction_scores[layer, head]),
             float(check.previous_token_scores[layer, head]),
             verdicts.get((layer, head), ""),
             (layer, head) in check.previous_token_heads)
            for layer in range(n_layers) for head in range(n_heads)]
    return table_to_csv(("head", "layer", "head index", "patching effect", "induction score",
                         "previous-token score", "verdict", "previous-token head"), rows)


@register_csv(VerbCurves)
def verb_curves_csv(curves: VerbCurves, position: int | None = None) -> bytes:
    """Both verbs' probabilities by layer after patching one position (all positions if None)."""
    positions = range(len(curves.tokens)) if position is None else [position]
    labels = export_labels(curves.token_texts or curves.tokens)
    header = ["position", "layer", f"P({curves.correct_verb})", f"P({curves.wrong_verb})"]
    rows = [(labels[p], layer, float(curves.correct_prob[layer, p]),
             float(curves.wrong_prob[layer, p]))
            for p in positions for layer in range(curves.correct_prob.shape[0])]
    return table_to_csv(header, rows)
