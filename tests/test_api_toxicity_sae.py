"""The toxicity and SAE endpoints, in process (FastAPI's TestClient) on the demo model.

They need things a plain server lacks: a Detoxify classifier (here a tiny random one in
Detoxify's checkpoint format, set as `WORKBENCH_DETOXIFY_CHECKPOINT`/`_CONFIG` would set it) and
an SAELens folder on the server (a random SAE saved here). Reference for each: the page's own
interp call and JSON export (`interp.export.to_json`), computed here with the classifier and SAE
loaded again independently of the API's shared copies. Bad inputs get a 4xx JSON message.
"""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from api.app import create_api
from interp import bias, export, toxicity
from interp import sae as saes
from interp.models import load_model
from interp.random_models import save_random_detoxify
from interp.sae.modules import SAEConfig, SparseAutoencoder
from interp.settings import Settings
from tests.api_support import differences
from tests.test_toxicity import TINY_BERT

# Checked over HTTP in tests/test_api.py's real server; these need a classifier or an SAE folder.
IN_PROCESS = ("toxicity_scores", "toxicity", "bias_group_toxicity", "sae_features")
PROMPT = "The nurse said that"
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def detoxify_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detoxify")
    return str(save_random_detoxify(folder, seed=1, **TINY_BERT)), str(folder)


@pytest.fixture(scope="module")
def classifier(detoxify_files):
    checkpoint, folder = detoxify_files
    return toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=checkpoint,
                                                              config_folder=folder))


@pytest.fixture(scope="module")
def sae_folder(tmp_path_factory, demo):
    sae = SparseAutoencoder(SAEConfig(d_in=demo.info.d_model, d_sae=4 * demo.info.d_model,
                                      hook_name=HOOK, architecture="topk", k=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in (sae.W_enc, sae.W_dec):
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    folder = tmp_path_factory.mktemp("sae") / "resid1"
    saes.save_saelens(sae, folder)
    return str(folder)


def api_client(**settings) -> TestClient:
    return TestClient(create_api(Settings(api_requests_per_minute=100_000, **settings)),
                      base_url="http://test")


@pytest.fixture(scope="module")
def client(detoxify_files):
    checkpoint, folder = detoxify_files
    with api_client(allow_custom_models=True, detoxify_checkpoint=checkpoint,
                    detoxify_config=folder) as session:
        yield session


def assert_same(response, reference: bytes) -> None:
    assert response.status_code == 200, response.text[:500]
    found = differences(response.json(), json.loads(reference))
    assert not found, found[:5]


def assert_refused(response, status: int, says: str) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert says in body["detail"], body
    assert "Traceback" not in body["detail"]


def test_toxicity_scores_equal_detoxifys_on_the_same_texts(client, classifier):
    texts = ["You are wonderful.", "I will find you.", "The weather is fine today."]
    reference = export.to_json(toxicity.score_texts(classifier, texts))
    assert_same(client.post("/toxicity_scores", json={"model": "demo", "texts": texts}),
                reference)


def test_toxicity_of_continuations_equals_the_pages_export(client, demo, classifier):
    options = dict(k=3, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=4, threshold=0.95)
    reference = export.to_json(toxicity.continuations_toxicity(
        demo, classifier, PROMPT, options["k"], options["temperature"], options["top_p"],
        options["max_new_tokens"], options["seed"], options["threshold"]))
    assert_same(client.post("/toxicity", json={"model": "demo", "prompt": PROMPT,
                                               "generate_if_flagged": True, **options}),
                reference)


def test_a_prompt_the_classifier_flags_is_refused_unless_asked(client, demo, classifier):
    threshold = 0.5
    assert toxicity.check_prompt(classifier, PROMPT, threshold).flagged  # the tiny BERT flags it
    body = {"model": "demo", "prompt": PROMPT, "k": 2, "max_new_tokens": 4,
            "threshold": threshold}
    assert_refused(client.post("/toxicity", json=body), 422, "generate_if_flagged")
    reference = export.to_json(toxicity.continuations_toxicity(
        demo, classifier, PROMPT, 2, 1.0, 0.95, 4, 0, threshold))
    assert_same(client.post("/toxicity", json={**body, "generate_if_flagged": True}), reference)


def test_group_toxicity_equals_the_pages_export(client, demo, classifier):
    groups = ["Asian", "white"]
    reference = export.to_json(bias.group_toxicity(
        demo, classifier, bias.DEFAULT_GROUP_TOXICITY_TEMPLATE, tuple(groups), 2, 1.0, 0.95, 5,
        0, 0.5))
    assert_same(client.post("/bias_group_toxicity", json={
        "model": "demo", "groups": groups, "k": 2, "max_new_tokens": 5}), reference)


def test_sae_features_equal_the_explore_tabs_export(client, demo, sae_folder):
    sae = saes.load_saelens(sae_folder)
    reference = export.to_json(saes.prompt_features(demo, sae, PROMPT, 6, 3))
    assert_same(client.post("/sae_features", json={
        "model": "demo", "prompt": PROMPT, "sae_folder": sae_folder, "n_features": 6,
        "per_token": 3}), reference)


@pytest.mark.parametrize("body, status, says", [
    ({"texts": []}, 422, "texts"),
    ({"texts": ["fine"], "classifier": "huge"}, 422, "classifier"),
    ({"texts": ["x" * 20_001]}, 422, "texts.0"),
])
def test_bad_toxicity_requests_get_a_clear_4xx(client, body, status, says):
    assert_refused(client.post("/toxicity_scores", json={"model": "demo", **body}), status, says)


@pytest.mark.parametrize("path, body, says", [
    ("/toxicity", {"prompt": PROMPT, "k": 0}, "k"),
    ("/toxicity", {"prompt": "", "k": 1}, "prompt"),
    ("/toxicity", {"prompt": PROMPT, "top_p": 0}, "top_p"),
    ("/bias_group_toxicity", {"template": "No slot here", "k": 1, "max_new_tokens": 2},
     "{group}"),
])
def test_bad_sampling_requests_get_a_clear_422(client, path, body, says):
    assert_refused(client.post(path, json={"model": "demo", **body}), 422, says)


def test_bad_sae_folders_get_a_clear_422(client, tmp_path, demo):
    missing = client.post("/sae_features", json={"model": "demo", "prompt": PROMPT,
                                                 "sae_folder": str(tmp_path / "none")})
    assert_refused(missing, 422, "does not exist")
    narrow = SparseAutoencoder(SAEConfig(d_in=demo.info.d_model + 1, d_sae=8, hook_name=HOOK))
    saes.save_saelens(narrow, tmp_path / "narrow")
    wrong_width = client.post("/sae_features", json={"model": "demo", "prompt": PROMPT,
                                                     "sae_folder": str(tmp_path / "narrow")})
    assert wrong_width.status_code == 422, wrong_width.text
    assert str(demo.info.d_model) in wrong_width.json()["detail"]


def test_without_a_classifier_toxicity_answers_503_with_the_pages_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with api_client(allow_custom_models=False) as session:
        answer = session.post("/toxicity_scores", json={"model": "demo", "texts": ["hello"]})
    assert_refused(answer, 503, toxicity.CHECKPOINT_SETTING)
    assert answer.json()["error"] == "ClassifierUnavailableError"
    assert "Retry-After" in answer.headers


def test_a_public_deployment_reads_no_sae_folder_from_a_request(sae_folder):
    with api_client(allow_custom_models=False) as session:
        answer = session.post("/sae_features", json={"model": "demo", "prompt": PROMPT,
                                                     "sae_folder": sae_folder})
    assert_refused(answer, 403, "WORKBENCH_ALLOW_CUSTOM_MODELS")
    assert sae_folder not in answer.text
