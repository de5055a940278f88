"""The quickstart notebook runs top to bottom on the demo model, offline, in a local kernel
(nbclient), and its report reproduces. Reference: the notebook's own printed outcome and the
files it writes, checked here."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_the_quickstart_notebook_runs_offline_on_the_demo_model(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKSTART_OUTPUT", str(tmp_path))
    monkeypatch.setenv("QUICKSTART_MODEL", "demo")
    monkeypatch.setenv("WORKBENCH_RUNS_URL", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", "")  # the first cell finds the checkout itself
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel starts in notebooks/, as Jupyter would: `interp` is not on its path there.
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "reproduced" in printed and "IOI patching (notebook)" in printed
    report = (tmp_path / "quickstart-report.html").read_text()
    assert report.count("Plotly.newPlot") == 1 and report.count('class="figure"') == 2
    checked = (tmp_path / "quickstart-report-checked.html").read_text()
    assert 'data-stamp="reproduced"' in checked
