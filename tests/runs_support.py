"""A saved run in the test session's run store (WORKBENCH_RUNS_URL, set in conftest), so the
Runs page has something to list and draw, in AppTest and in the browser."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import torch

from interp.runs import ModelRef, RunRecord, RunStore

SEEDED_TITLE = "seeded for the page test"


def seed_saved_run() -> None:
    store = RunStore(os.environ["WORKBENCH_RUNS_URL"])
    if not store.list(text=SEEDED_TITLE):
        figure = go.Figure(go.Heatmap(z=[[0.0, 1.0], [2.0, 3.0]]))
        store.save(RunRecord("logit_lens", "LensResult", ModelRef("demo"), ("seed",),
                             tensors={"values": torch.arange(4.0)}, figures=(figure.to_json(),),
                             title=SEEDED_TITLE))
