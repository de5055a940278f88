"""Reports: self-contained HTML with plotly.js once and each figure's data once, that reproduce
themselves, and open in headless Chromium with no request to any host.

References: plotly.js's own source text (counted in the file), the figure's JSON as Plotly
writes it, a model whose weights were replaced (a changed model must not reproduce), and the
browser's own request log.
"""

from __future__ import annotations

import json
import os

import pytest
from plotly.offline import get_plotlyjs

from interp.figures import figure_for
from interp.logit_lens import logit_lens
from interp.models import load_model
from interp.random_models import save_random_gpt2
from interp.report import (
    html_report,
    markdown_report,
    read_report,
    reproduce_report,
    script_json,
)
from interp.runs import RunStore, describe_call, record_for
from tests.conftest import TINY_SHAPE

PROMPT = "The cat sat on the mat because"


def load_on_cpu(name: str):
    return load_model(name, device="cpu")


@pytest.fixture
def model_folder(tmp_path):
    return save_random_gpt2(tmp_path / "model", seed=0, **TINY_SHAPE)


@pytest.fixture
def saved_lens(model_folder, tmp_path):
    """A logit-lens run of the tiny model, saved with its figure and its interp call."""
    model = load_on_cpu(str(model_folder))
    result = logit_lens(model, PROMPT, k=3)
    figure = figure_for(result).figure
    record = record_for(result, page="logit_lens", model=model, prompts=[PROMPT],
                        options={"k": 3}, figures=[figure], explanation="The lens, explained.",
                        calls=[describe_call(logit_lens, (model, PROMPT), {"k": 3})])
    return RunStore(tmp_path / "runs.sqlite").save(record)


def test_plotly_js_and_each_figure_are_in_the_report_once(saved_lens):
    report = html_report([saved_lens]).decode("utf-8")
    plotly_js = get_plotlyjs()
    print(f"report: {len(report) / 1e6:.2f} MB, plotly.js {len(plotly_js) / 1e6:.2f} MB")
    assert report.count(plotly_js) == 1
    assert report.count(plotly_js[:200]) == 1  # no second, partial copy either
    spec = json.loads(saved_lens.record.figures[0])
    assert saved_lens.record.figures and spec["data"]
    for trace in spec["data"]:
        assert report.count(script_json(trace)) == 1
    assert report.count('class="figure"') == 1


def test_the_report_embeds_its_run_record(saved_lens):
    report = html_report([saved_lens])
    (embedded,) = read_report(report)
    assert (embedded.id, embedded.content_hash) == (saved_lens.id, saved_lens.content_hash)
    assert embedded.record.figures == tuple(
        json.dumps(json.loads(spec)) for spec in saved_lens.record.figures)
    assert embedded.record.tensors.keys() == saved_lens.record.tensors.keys()
    for name, tensor in saved_lens.record.tensors.items():
        assert embedded.record.tensors[name].equal(tensor)
    text = report.decode()
    assert "interp.logit_lens.logit_lens(load_model(" in text and "k=3" in text
    assert "The lens, explained." in text and "torch " in text


def test_reproduce_on_the_unchanged_model_stamps_reproduced(saved_lens):
    stamped = reproduce_report(html_report([saved_lens]), load_model=load_on_cpu).decode()
    assert 'data-stamp="reproduced"' in stamped and 'data-stamp="differs"' not in stamped
    assert read_report(stamped)[0].id == saved_lens.id  # a stamped report can be re-checked


def test_reproduce_on_a_changed_model_lists_the_differences(saved_lens, model_folder):
    save_random_gpt2(model_folder, seed=1, **TINY_SHAPE)  # other weights, same name and shape
    stamped = reproduce_report(html_report([saved_lens]), load_model=load_on_cpu).decode()
    assert 'data-stamp="differs"' in stamped and 'data-stamp="reproduced"' not in stamped
    assert "largest difference" in stamped


def test_the_markdown_report_has_inputs_tables_and_calls(saved_lens):
    text = markdown_report([saved_lens])
    assert f"> {PROMPT}" in text and "```python" in text and "### Table: table" in text


def test_prompts_are_escaped_in_the_html(saved_lens, tmp_path):
    hostile = saved_lens.record.__class__(**{**saved_lens.record.__dict__,
                                             "prompts": ("<script>alert(1)</script>",)})
    saved = RunStore(tmp_path / "other.sqlite").save(hostile)
    text = html_report([saved]).decode()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.browser
def test_the_report_opens_offline_in_chromium_with_every_figure_drawn(saved_lens, tmp_path):
    from bench.browser import CHROMIUM, browser_page

    if not CHROMIUM.is_file():
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER", "") == "1":
            pytest.fail(f"Chromium not found at {CHROMIUM} (WORKBENCH_REQUIRE_BROWSER=1)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    path = tmp_path / "report.html"
    path.write_bytes(html_report([saved_lens, saved_lens]))
    requests = []
    with browser_page() as page:
        page.context.set_offline(True)
        page.on("request", lambda request: requests.append(request.url))
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_selector("div.figure .main-svg", timeout=30_000)
        drawn = page.eval_on_selector_all(
            "div.figure", "divs => divs.map(d => d.querySelectorAll('.main-svg').length > 0)")
    assert drawn == [True, True]
    assert errors == []
    assert [url for url in requests if not url.startswith("file://")] == []
