"""The JSON API over HTTP, on the real server (`streamlit run streamlit_app.py`) and the demo model.

One server serves the whole module (custom models off, as on a public deployment). Each
analysis endpoint's answer is compared with the page's own call and JSON export computed here in
the test process; the founding documents' endpoints against a peer computation (the Hugging Face
model's own forward pass and greedy decoding) or an invariant; every bad request against the
rule that it gets a 4xx JSON message with no traceback and no server folder in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import torch

from api.analyses import ANALYSES
from api.app import api_routes
from bench.browser import (
    CHROMIUM,
    REPO,
    RESULT_TEST_ID,
    SHELL_TEXT,
    browser_page,
    click_and_wait,
    result_appears,
    wait_for_app_shell,
)
from interp import attention as att
from interp import bias, export
from interp.attribution.runs import run_attribution
from interp.circuits.runs import run_circuits, view_circuit
from interp.logit_lens import colour_lens, direct_logit_attribution, lens_of_ids
from interp.models import DEMO_MODEL_DIR, MODEL_REGISTRY, is_available, load_model
from interp.patching import forms, sweeps
from interp.patching_tasks import agreement_task
from interp.settings import Settings
from pages.common import PAGES
from tests.api_support import api_server, differences
from tests.test_api_toxicity_sae import IN_PROCESS

pytestmark = [pytest.mark.slow]

PROMPT = "The cat sat on the"
RESID = "Residual stream (resid_pre)"
TEMPLATES = ["The {group} worked as a", "The {group} was hired as a"]
BAD_PATH_MARKERS = ("Traceback", str(REPO), "site-packages")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    with api_server(tmp_path_factory.mktemp("api") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    with httpx.Client(base_url=base_url + "/api", timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def page_exports(model) -> dict[str, tuple[dict, bytes]]:
    """Per analysis: a request body, and the JSON the page's Export button gives for it, from
    the call the page makes (pages/attention.py, logit_lens.py, patching.py, circuits.py,
    attribution.py, toxicity_bias.py)."""
    run = att.run_attention(model, PROMPT, False, att.DEFAULT_REPEAT_LENGTH, att.DEFAULT_SEED)
    sentence = "The keys to the cabinet are on the table"
    task = forms.TASK_BUILDERS["agreement"](model, sentence=sentence, corrupted_prefix=None)
    return {
        "attention": ({"prompt": PROMPT}, export.to_json(run.patterns)),
        "head_scores": ({"prompt": PROMPT}, export.to_json(run.scores)),
        "attention_rollout": ({"prompt": PROMPT, "head_fusion": "max"}, export.to_json(
            att.attention_rollout(run.patterns, head_fusion="max"))),
        "logit_lens": ({"prompt": PROMPT, "k": 3, "colour": " cat"},
                       export.to_json(colour_lens(model, PROMPT, 3, " cat"))),
        "dla": ({"prompt": PROMPT, "contrast": " cat"},
                export.to_json(direct_logit_attribution(model, PROMPT, None, " cat"))),
        "patching": ({"task": "agreement", "task_options": {"sentence": sentence},
                      "run": {"sweeps": [RESID], "attribution": False}},
                     export.to_json(sweeps.run_sweeps(model, task, [RESID], "denoising",
                                                      sweeps.AUTO_METRIC, False))),
        "bias_templates": ({"templates": TEMPLATES, "groups": ["man", "woman"],
                            "targets": ["nurse", "doctor"]},
                           export.to_json(bias.template_probe(model, tuple(TEMPLATES),
                                                              ("man", "woman"),
                                                              ("nurse", "doctor")))),
        "bias_pairs": ({}, export.to_json(bias.pairwise_likelihood(
            model, bias.bundled_pairs(), "bundled sample"))),
        "circuits": ({"task": "agreement", "task_options": {"sentence": sentence},
                      "method": "eap", "n_edges": 10},
                     export.to_json(view_circuit(model, run_circuits(
                         model, agreement_task(model, sentence=sentence), "eap", "resample"),
                         10))),
        "attribution": ({"prompt": PROMPT, "methods": ["gradient_x_input", "saliency"]},
                        export.to_json(run_attribution(
                            model, PROMPT, ("gradient_x_input", "saliency"), None, {}, False,
                            False, False, None, False))),
    }


def test_every_analysis_answers_the_pages_export(client, demo):
    """Reference: the page's own interp call and `export.to_json`, run here; a newly registered
    analysis fails this test until it has a request and reference above (or, for one that needs
    a classifier or an SAE folder, in tests/test_api_toxicity_sae.py)."""
    cases = page_exports(demo)
    assert set(cases) | set(IN_PROCESS) == set(ANALYSES)
    for name, (body, reference) in cases.items():
        response = client.post(f"/{name}", json={"model": "demo", **body})
        assert response.status_code == 200, (name, response.text[:500])
        assert response.headers["content-type"] == "application/json"
        found = differences(response.json(), json.loads(reference))
        assert not found, (name, found[:5])


def test_health_models_and_model_info(client):
    """Reference: the demo model's own config.json for the card."""
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["device"] in ("cpu", "cuda", "mps")
    listed = client.get("/models").json()
    demo_entry = next(m for m in listed["models"] if m["key"] == "demo")
    assert demo_entry["available"] and demo_entry["source"] == "bundled with the app"
    assert listed["custom_models_allowed"] is False
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    card = client.get("/model_info", params={"model": "demo"}).json()
    assert (card["n_layers"], card["n_heads"], card["d_model"], card["n_ctx"],
            card["d_vocab"]) == (config["n_layer"], config["n_head"], config["n_embd"],
                                 config["n_positions"], config["vocab_size"])
    assert card["source"] == "bundled with the app" and str(REPO) not in json.dumps(card)
    assert "demo" in client.get("/health").json()["models_loaded"]


def next_token_probs(model, text: str) -> torch.Tensor:
    """Peer: the Hugging Face model's own forward pass (BOS first, as the workbench reads)."""
    ids = model.to_tokens(text)
    with torch.no_grad():
        logits = model.bridge.original_model(ids).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


def test_predict_finds_the_wrong_verb_and_its_probabilities(client, demo):
    """References: the HF forward pass for both verbs' probabilities, and the invariant that
    denoising the embedding (resid_pre at layer 0) of the only changed token, the subject,
    restores the clean run exactly."""
    answer = client.post("/predict", json={"model": "demo",
                                           "sentence": "The keys to the cabinet are on the table"})
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert (body["correct_verb"], body["wrong_verb"]) == (" are", " is")
    assert body["corrupted_prefix"] == "The key to the cabinet"
    for run, text in (("clean", body["prefix"]), ("corrupted", body["corrupted_prefix"])):
        probs = next_token_probs(demo, text)
        for verb in (" are", " is"):
            (verb_id,) = demo.token_ids(verb)
            assert body["probabilities"][run][verb] == pytest.approx(float(probs[verb_id]),
                                                                     rel=1e-4, abs=1e-7)
    curves = body["verb_curves"]
    subject = curves["subject_position"]
    assert curves["correct_prob"][0][subject] == pytest.approx(
        body["probabilities"]["clean"][" are"], rel=1e-4)
    n_layers = demo.info.n_layers
    assert len(body["patching"]["normalized"]) == n_layers
    assert body["explanation"]["markdown"].strip()


def test_chat_reply_is_greedy_and_its_lens_is_interps(client, demo):
    """References: greedy decoding with the HF model's forward pass, and `lens_of_ids` on the
    prompt and reply tokens for every generated token's layer-by-layer top-k."""
    messages = [{"role": "user", "content": "Mary went to the store."}]
    answer = client.post("/chat", json={"model": "demo", "messages": messages,
                                        "max_new_tokens": 4, "temperature": 0, "k": 3})
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    prompt_ids = demo.to_tokens("User: Mary went to the store.\nAssistant:")[0].tolist()
    assert body["prompt_token_ids"] == prompt_ids
    generated = [token["token_id"] for token in body["tokens"]]
    ids = list(prompt_ids)
    for token_id in generated:  # each reply token is the argmax after the ones before it
        with torch.no_grad():
            logits = demo.bridge.original_model(torch.tensor([ids])).logits[0, -1]
        assert int(logits.argmax()) == token_id
        ids.append(token_id)
    if not generated:
        pytest.skip("the demo model ended its turn at once; nothing to read")
    lens = lens_of_ids(demo, prompt_ids + generated[:-1], k=3)
    assert body["layers"] == list(lens.layers)
    for index, token in enumerate(body["tokens"]):
        position = len(prompt_ids) - 1 + index
        assert token["position"] == position
        for row, layer in enumerate(token["lens"]):
            assert [t["token_id"] for t in layer["top"]] == lens.top_ids[row, position].tolist()
            reference = lens.top_log_probs[row, position].exp().tolist()
            assert [t["probability"] for t in layer["top"]] == pytest.approx(reference, rel=1e-4)


def test_the_schema_lists_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    expected = {"/health", "/models", "/model_info", "/predict", "/chat",
                *(f"/{name}" for name in ANALYSES)}
    assert set(schema["paths"]) == expected
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text


def test_unknown_paths_and_methods_answer_json(client):
    missing = client.get("/no-such-endpoint")
    assert missing.status_code == 404 and "no API endpoint" in missing.json()["detail"]
    wrong = client.delete("/health")
    assert wrong.status_code == 405 and wrong.json()["error"] == "MethodNotAllowed"
    wrong = client.get("/logit_lens")
    assert wrong.status_code == 405 and "GET" in wrong.json()["detail"]


def test_no_download_and_no_cors_on_a_public_deployment(client):
    """With custom models off, a listed model that is not on disk is refused, not downloaded;
    and a cross-site preflight gets no CORS permission."""
    if is_available(MODEL_REGISTRY["gpt2-xl"]):
        pytest.skip("GPT-2 XL is in the local cache here")
    refused = client.get("/model_info", params={"model": "gpt2-xl"})
    assert refused.status_code == 400 and "never start a download" in refused.json()["detail"]
    assert "gpt2-xl" not in client.get("/health").json()["models_loaded"]
    preflight = client.options("/logit_lens", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_a_5_mb_body_is_refused_with_413(client):
    response = client.post("/logit_lens", content=b"x" * (5 * 1024 * 1024),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(5 * 16):
            yield b"x" * 65536

    response = client.post("/logit_lens", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(("body", "expected_status", "says"), [
    (b'{"prompt": "The cat', 422, "JSON"),
    ({"model": "demo", "prompt": 5}, 422, "prompt"),
    ({"model": "demo", "prompt": "The cat", "k": "three"}, 422, "k"),
    ({"model": "demo", "prompt": ""}, 422, "prompt"),
    ({"model": "demo", "prompt": "   "}, 422, "empty"),
    ({"model": "demo", "prompt": "word " * 200}, 422, "tokens long"),
    ({"model": "demo", "prompt": "x" * 30_000}, 422, "prompt"),
    ({"model": "gpt-17", "prompt": "The cat"}, 403, "listed models"),
    ({"model": str(DEMO_MODEL_DIR), "prompt": "The cat"}, 403, "listed models"),
    ({"model": "../../etc/passwd", "prompt": "The cat"}, 403, "listed models"),
    ({"model": "demo", "prompt": "The cat", "surprise": 1}, 422, "surprise"),
])
def test_bad_requests_get_a_clear_4xx_message(client, body, expected_status, says):
    if isinstance(body, bytes):
        response = client.post("/logit_lens", content=body,
                               headers={"content-type": "application/json"})
    else:
        response = client.post("/logit_lens", json=body)
    assert response.status_code == expected_status, response.text[:300]
    detail = response.json()["detail"]
    assert says in detail
    assert not any(marker in response.text for marker in BAD_PATH_MARKERS)


@pytest.mark.parametrize(("task_options", "says"), [
    ({"sentence": 5}, "sentence"), ({"sentense": "The keys are"}, "sentense"),
    ({"sentence": "keys"}, "verb"),
])
def test_bad_task_options_get_a_clear_422(client, task_options, says):
    response = client.post("/patching", json={"model": "demo", "task": "agreement",
                                              "task_options": task_options})
    assert response.status_code == 422, response.text[:300]
    assert says in response.json()["detail"]
    assert not any(marker in response.text for marker in BAD_PATH_MARKERS)


def test_the_entry_file_serves_the_api_and_off_removes_it():
    """Streamlit's own discovery finds the `st.App` in streamlit_app.py; WORKBENCH_API=off
    gives it no routes."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(Path(REPO / "streamlit_app.py"))
    assert found.is_asgi_app and found.import_string.endswith(":app")
    assert api_routes(Settings(api=False)) == []
    assert [route.path for route in api_routes(Settings())] == ["/api"]


@pytest.mark.browser
def test_pages_and_api_share_one_copy_of_the_model(client, base_url):
    """A browser session's first request is a deep link to the Logit lens page, which loads the
    default model inside the app's shell (sent through app_navigation.py and back); the API then
    runs on that model (the page runs its lens, the API its own): the process loaded it once (the loads counter is per process, across
    every cache, so a second cache would show 2)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    default = client.get("/models").json()["default"]
    entry = next(e for e in PAGES if e.url_path == "logit_lens")
    with browser_page() as page:
        page.goto(f"{base_url}/{entry.url_path}")
        wait_for_app_shell(page, entry.url_path, PAGES[0].url_path)
        assert page.locator('[data-testid="stSidebar"]').get_by_text(SHELL_TEXT).count()
        assert page.locator('[data-testid="stMain"] h1').inner_text() == entry.title
        click_and_wait(page, page.get_by_role("button", name=entry.main_action))
        assert result_appears(page, RESULT_TEST_ID)  # the page ran the model itself
        assert not page.locator('[data-testid="stException"]').count()
    assert client.post("/logit_lens", json={"model": default, "prompt": PROMPT}).status_code == 200
    health = client.get("/health").json()
    assert default in health["models_loaded"] and health["loads"][default] == 1, health


def test_the_induction_task_through_the_api_equals_the_pages_export(client, demo):
    """#28: the induction task through /api/patching with the heads sweep; reference: the
    page's run_sweeps and export.to_json in this process, the induction check included."""
    heads = "Attention heads (z)"
    options = {"length": 8, "n_sequences": 4, "seed": 2, "corruption": "shuffle"}
    task = forms.TASK_BUILDERS["induction"](demo, **options)
    reference = export.to_json(sweeps.run_sweeps(demo, task, [heads], "denoising",
                                                 sweeps.AUTO_METRIC, False))
    response = client.post("/patching", json={"model": "demo", "task": "induction",
                                              "task_options": options,
                                              "run": {"sweeps": [heads], "attribution": False}})
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["induction"]["heads"], "the run carries its induction check"
    found = differences(body, json.loads(reference))
    assert not found, found[:5]
    bad = client.post("/patching", json={"model": "demo", "task": "induction",
                                         "task_options": {"length": 2}})
    assert bad.status_code in (400, 422) and "from 4 to" in bad.text
