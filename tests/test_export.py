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


def exported_sweep(model):
    from interp import patching_tasks as tasks
    from interp.patching import patch

    task = tasks.custom_task(model, clean="When Mary and John went out,\nJohn gave it to",
                             corrupted="When Mary and John went out,\nMary gave it to",
                             correct=" Mary", wrong=" John")
    inputs, metric = tasks.task_inputs(model, task)
    return patch(model, inputs, metric, site="resid_pre", granularity="layer_pos")


def test_exports_write_raw_token_texts_and_ids_not_the_screens_marks(tiny_model):
    """Reference: GPT-2's tokenizer decoding each id alone (Hugging Face's own decode); the
    screen's marks (␣ for a leading space, ↵ for a newline) must not reach JSON or CSV."""
    from interp.export import to_csv
    result = exported_sweep(tiny_model)
    tokenizer = tiny_model.bridge.tokenizer
    expected = [tokenizer.decode([i]) for i in result.token_ids]
    assert " Mary" in expected and "\n" in expected  # the prompt has both kinds of whitespace
    assert "␣Mary" in result.tokens  # the screen keeps its marks

    payload = json.loads(to_json(result))
    assert payload["token_texts"] == expected
    assert payload["token_ids"] == tiny_model.to_tokens(
        "When Mary and John went out,\nJohn gave it to")[0].tolist()
    assert "tokens" not in payload
    assert "␣" not in json.dumps(payload, ensure_ascii=False)

    header = next(csv.reader(io.StringIO(to_csv(result).decode("utf-8"))))
    assert header[1:] == [f"{i}: {json.dumps(text, ensure_ascii=False)}"
                          for i, text in enumerate(expected)]
    assert not any("␣" in cell or "↵" in cell for cell in header)


def test_the_next_token_export_carries_raw_texts(tiny_model):
    """Reference: the tokenizer's own decode of each id."""
    from interp.predictions import next_token_topk
    prediction = next_token_topk(tiny_model, "The cat sat on the", k=3)
    payload = json.loads(to_json(prediction))
    decode = tiny_model.bridge.tokenizer.decode
    assert payload["token_texts"] == [decode([i]) for i in prediction.token_ids]
    assert payload["top_texts"] == [decode([i]) for i in prediction.top_ids]
    assert "tokens" not in payload and "top_tokens" not in payload
