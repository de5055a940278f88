"""The Sparse autoencoders page in AppTest on the demo model: a tiny training run, its Browse
and Explore tabs, and loading SAELens folders (one that fits, one whose d_in does not).

References: what the page must show (figures, escaped contexts, the cfg) and the folder's own
d_in against the demo model's d_model for the refusal.
"""

from __future__ import annotations

import json

import pytest

from interp.sae import save_saelens
from interp.sae.modules import SAEConfig, SparseAutoencoder
from tests.test_pages_apptest import open_page, problems

pytestmark = pytest.mark.slow


def entry():
    from pages.kit import PAGES

    return next(e for e in PAGES if e.url_path == "sae")


def test_train_browse_explore_and_load_on_the_demo_model(tmp_path):
    """Reference: the page's own contract (no exception or error box; figures in every tab;
    the folder's d_in 16 refused against the demo model's d_model)."""
    app = open_page(entry(), **{"sae.steps": 20, "sae.max_tokens": 2_000})
    next(b for b in app.button if b.label == "Train SAE").click().run()
    assert not problems(app), problems(app)
    assert len(app.get("plotly_chart")) >= 4  # curves, density, feature card, prompt features
    contexts = [m.value for m in app.markdown if m.value.startswith("<span")]
    assert contexts and all("<script" not in c for c in contexts)
    assert [m for m in app.metric if m.label == "CE loss recovered"]

    trained = app.session_state["kit.results"]["sae.trained"][1]
    save_saelens(trained.sae, tmp_path / "fits")
    app.session_state["sae.folder"] = app.session_state["sae.folder.widget"] = str(tmp_path / "fits")
    app.run()
    next(b for b in app.button if b.label == "Load SAE").click().run()
    assert not problems(app), problems(app)
    assert [r for r in app.radio if r.label == "SAE"]  # trained and loaded, to choose from

    wrong = SparseAutoencoder(SAEConfig(d_in=16, d_sae=32, hook_name="blocks.1.hook_resid_pre"))
    save_saelens(wrong, tmp_path / "wrong")
    assert json.loads((tmp_path / "wrong" / "cfg.json").read_text())["d_in"] == 16
    app.session_state["sae.folder"] = app.session_state["sae.folder.widget"] = str(tmp_path / "wrong")
    app.run()  # the cfg is checked as soon as the folder is read, before Load SAE is offered
    assert not app.exception
    assert not [b for b in app.button if b.label == "Load SAE"]
    assert any("reads 16 numbers" in e.value for e in app.error), [e.value for e in app.error]
