"""Save run on a page (through the kit, no page code) and the Runs page, in AppTest on the demo
model. References: the store read back with `RunStore` directly, and the page's own result."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

from interp.models import load_model
from interp.reproduce import reproduce
from interp.runs import ModelRef, RunRecord, RunStore
from pages.kit import DEFAULT_PROMPT, Keys
from tests.conftest import APP_PATH

TIMEOUT = 120


@pytest.fixture
def store_location(tmp_path, monkeypatch):
    location = str(tmp_path / "runs.sqlite")
    monkeypatch.setenv("WORKBENCH_RUNS_URL", location)
    return location


def open_page(path: str) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT)
    app.session_state[Keys.MODEL] = "demo"
    app.session_state[Keys.PROMPT] = DEFAULT_PROMPT
    app.run()
    app.switch_page(path)
    return app.run()


def problems(app: AppTest) -> list[str]:
    return [str(e.value) for e in app.exception] + [e.value for e in app.error]


def test_save_run_on_a_page_keeps_its_result_figure_and_options(store_location):
    app = open_page("pages/logit_lens.py")
    [run_button] = [b for b in app.button if b.label == "Run logit lens"]
    run_button.click().run()
    assert not problems(app), problems(app)
    saves = [b for b in app.button if b.label == "Save run"]
    assert saves, "the page's exports have no Save run button"
    saves[0].click().run()
    assert not problems(app), problems(app)
    assert any("Saved as run" in c.value for c in app.caption)
    (summary,) = RunStore(store_location).list()
    run = RunStore(store_location).open(summary.id)
    assert run.record.page == "logit_lens" and run.record.model.name == "demo"
    assert run.record.model.revision.startswith("sha256:")
    assert run.record.prompts == (DEFAULT_PROMPT,)
    assert run.record.figures and run.record.tensors
    assert any(key.startswith("logit_lens.") for key in run.record.options)
    assert "compute_s" in run.record.timings

    app.switch_page("pages/runs.py").run()
    assert not problems(app), problems(app)
    assert app.get("plotly_chart"), "the opened run shows no figure"


def test_the_runs_page_compares_two_runs_and_deletes_one(store_location):
    store = RunStore(store_location)
    first = store.save(RunRecord("patching", "PatchingResult", ModelRef("demo"), ("a",),
                                 options={"patching.layer": 1},
                                 tensors={"values": torch.tensor([[1.0, 2.0]])}, title="first"))
    second = store.save(RunRecord("patching", "PatchingResult", ModelRef("demo"), ("a",),
                                  options={"patching.layer": 2},
                                  tensors={"values": torch.tensor([[1.5, 0.0]])}, title="second"))
    app = open_page("pages/runs.py")
    assert not problems(app), problems(app)
    app.selectbox(key="runs.open.widget").set_value(second.id).run()
    app.selectbox(key="runs.compare.widget").set_value(first.id).run()
    assert not problems(app), problems(app)
    tables = [t.value for t in app.dataframe]
    differences = next(t for t in tables if "largest |second − first|" in t.columns)
    assert differences["largest |second − first|"].tolist() == [2.0]  # |0 - 2| by hand
    changes = next(t for t in tables if "setting" in t.columns)
    assert changes["setting"].tolist() == ["patching.layer"]

    app.selectbox(key="runs.compare.widget").set_value("").run()
    [delete] = [b for b in app.button if b.label == "Delete run"]
    delete.click().run()
    assert not problems(app), problems(app)
    assert [run.id for run in RunStore(store_location).list()] == [first.id]


def test_the_runs_page_warns_about_a_garbage_store_and_still_works(store_location):
    with open(store_location, "wb") as garbage:
        garbage.write(b"not a database" * 100)
    app = open_page("pages/runs.py")
    assert not problems(app), problems(app)
    assert any("not a readable database" in w.value for w in app.warning)
    assert any("No saved runs" in i.value for i in app.info)


def test_a_run_saved_from_a_saved_result_records_it_as_its_parent(store_location):
    """Attention rollout is computed from the attention patterns: saving both makes the
    rollout's run name the patterns' run by content hash, and the Runs page shows the chain."""
    app = open_page("pages/attention.py")
    assert not problems(app), problems(app)
    app.button(key="attention.export.patterns.save").click().run()
    app.button(key="attention.export.rollout.save").click().run()
    assert not problems(app), problems(app)
    store = RunStore(store_location)
    runs = {run.method: store.open(run.id) for run in store.list()}
    assert set(runs) == {"AttentionResult", "RolloutResult"}
    patterns, rollout = runs["AttentionResult"], runs["RolloutResult"]
    assert rollout.record.parents == (patterns.content_hash,)
    assert patterns.record.parents == ()
    assert [step.run.id for step in store.lineage(rollout.id)] == [patterns.id]
    # The patterns are one part of run_attention's result: the run records that part, so
    # making the call again compares the same tensors.
    (call,) = patterns.record.calls
    assert (call.function, call.part) == ("interp.attention:run_attention", "patterns")
    outcome = reproduce(patterns.record, load_model=lambda name: load_model(name, device="cpu"))
    assert outcome.reproduced and outcome.compared >= 1, outcome.differences
    assert rollout.record.calls == ()  # computed from a result, not from a model: not re-run
    app.switch_page("pages/runs.py").run()
    app.selectbox(key="runs.open.widget").set_value(rollout.id).run()
    assert any("Built from" in c.value for c in app.caption)
