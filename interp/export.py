"""Exporting any result: JSON with every number, CSV for tables, HTML for figures.

Results are frozen dataclasses; tensors and arrays become nested lists, so an export holds the
inputs, the options, the model and every number, and can be re-read without this package.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch


def plain(value):
    """Turn a result (dataclasses, tensors, arrays, tuples) into JSON-ready Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
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
