"""Exports: JSON keeps every number (tensors included), CSV keeps labels, HTML is standalone."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from interp.export import figure_to_html, matrix_to_csv, table_to_csv, to_json


@dataclass(frozen=True)
class Example:
    tokens: tuple[str, ...]
    values: torch.Tensor
    weights: np.ndarray
    score: float
    options: dict


def test_json_round_trip_keeps_numbers_and_names_the_type():
    values = torch.tensor([[0.25, -1.5], [float("nan"), 3.0]])
    example = Example(("␣a", "b"), values, np.arange(3), 0.5, {"metric": "logit_diff"})
    data = json.loads(to_json(example, app_version="test"))
    assert data["result_type"] == "Example" and data["app_version"] == "test"
    assert data["values"] == [[0.25, -1.5], [None, 3.0]]
    assert data["weights"] == [0, 1, 2] and data["tokens"] == ["␣a", "b"]
    assert data["options"] == {"metric": "logit_diff"}


def test_matrix_csv_has_labelled_rows_and_columns():
    rows = list(csv.reader(io.StringIO(matrix_to_csv(
        torch.tensor([[1.0, 2.0], [3.0, 4.0]]), ["L0", "L1"], ["0: a", "1: b,c"],
        corner="layer").decode())))
    assert rows == [["layer", "0: a", "1: b,c"], ["L0", "1.0", "2.0"], ["L1", "3.0", "4.0"]]


def test_table_csv_and_html():
    assert table_to_csv(["x"], [[1], [2]]).decode().splitlines() == ["x", "1", "2"]
    html = figure_to_html(go.Figure(go.Bar(x=[1], y=[2]))).decode()
    assert "<html>" in html[:100] and "plotly" in html.lower()


def test_figures_escape_token_text_for_plotly():
    from interp.figures import plot_text
    from interp.figures.prediction import top_k_bars
    from interp.predictions import NextTokenPrediction

    prediction = NextTokenPrediction("m", "p", ("a",), (1,), (5,), ("<b>bold</b>",), (0.5,),
                                     (1.0,), 0.1)
    labels = top_k_bars(prediction).data[0].y
    assert labels == ("1. &lt;b&gt;bold&lt;/b&gt;",)
    assert plot_text("a & <i>") == "a &amp; &lt;i&gt;"
