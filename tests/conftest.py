"""Shared fixtures: tiny random GPT-2 models in Hugging Face format, built offline.

They use GPT-2's real tokenizer (shipped in assets/) and load through the same `load_model` code
users run. No test may touch the network: the Hub is switched off before anything imports it.

Rules for every test here: numbers come from an independent computation, never from the code
under test, and a new test of a computation names its independent reference in its docstring
(a peer library, a hand calculation or an invariant). A test that guards a bug must have been
seen to fail with the code broken the way the bug would break it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Saved runs go to a store of this test session, never the user's own (app servers inherit it).
os.environ.setdefault("WORKBENCH_RUNS_URL", str(Path(tempfile.mkdtemp(prefix="workbench-runs-"))
                                                / "runs.sqlite"))

import pytest  # noqa: E402

from interp.models import load_model  # noqa: E402
from interp.random_models import save_random_gpt2  # noqa: E402

# AppTest runs the navigation script: streamlit_app.py only wraps it in an st.App with the API.
APP_PATH = str(Path(__file__).resolve().parent.parent / "app_navigation.py")
TINY_SHAPE = dict(n_layer=2, n_head=4, n_embd=32, n_positions=64)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 4-head, d_model 32 GPT-2 with random weights and GPT-2's tokenizer."""
    return save_random_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), seed=0, **TINY_SHAPE)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded through `load_model` (shared by the session, like the app's cache)."""
    return load_model(str(tiny_model_dir), device="cpu")
