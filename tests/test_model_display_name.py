"""A model from a local folder is named by the folder, not the server's path, wherever people see it.

Reference: the folder's own name (`Path.name`), read in the test. The deploy check saw a chart title
run past its chart ("Every head (12 layers x 12 heads), /tmp/bench-gpt2-small-two…") because the
title held the whole path; the same path went into explanation facts sent to a remote explainer.
"""

from __future__ import annotations

import interp.figures.logit_lens  # noqa: F401  (registers the lens figures)
import interp.figures.prediction  # noqa: F401
from interp.explain import explain
from interp.figures import figure_for
from interp.logit_lens import logit_lens
from interp.models import display_name
from interp.predictions import next_token_topk


def test_folders_are_named_by_their_last_part_and_other_names_are_kept():
    assert display_name("/srv/models/gpt2-small-copy") == "gpt2-small-copy"
    assert display_name("/srv/models/gpt2-small-copy/") == "gpt2-small-copy"
    assert display_name("openai-community/gpt2") == "openai-community/gpt2"
    assert display_name("demo") == "demo"


def test_a_folder_models_label_is_its_folder_name(tiny_model, tiny_model_dir):
    assert tiny_model.info.label == tiny_model_dir.name


def test_titles_and_explanation_facts_carry_no_server_path(tiny_model, tiny_model_dir):
    path = str(tiny_model_dir)
    lens = logit_lens(tiny_model, "The cat sat on the", k=3)
    prediction = next_token_topk(tiny_model, "The cat sat on the", k=3)
    for result in (lens, prediction):
        shown = figure_for(result)
        assert path not in shown.figure.layout.title.text
        assert tiny_model_dir.name in shown.figure.layout.title.text
        assert path not in shown.caption
    assert explain(lens, position=2).facts["model"] == tiny_model_dir.name
