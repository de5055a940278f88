"""The founding documents' two services, answered from `interp` results.

`POST /api/predict` is the verb-agreement demo: the sentence's verb and its pair (found by
`interp.patching_tasks.agreement_task`, which also flips the subject's number for the corrupted
run), both verbs' probabilities on the clean and corrupted prefixes, denoising patching of the
residual stream at every layer and position with each verb's probability after it, and the
offline explanation of the patching map. `POST /api/chat` continues a conversation with the
model (`interp.generation`) and reads every generated token through the logit lens: at each
layer, the top-k next tokens at the position that produced it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.requests import MAX_PROMPT_CHARS, ApiRequest
from interp.explain import explain
from interp.export import plain
from interp.generation import chat_prompt, generate
from interp.logit_lens import LensResult, lens_of_ids
from interp.patching.sweeps import AUTO_METRIC, SWEEPS, run_sweeps
from interp.patching_tasks import DEFAULT_AGREEMENT_SENTENCE, agreement_task

RESID_SWEEP = next(label for label, site in SWEEPS.items() if site == ("resid_pre", "layer_pos"))


class PredictRequest(ApiRequest):
    sentence: str = Field(DEFAULT_AGREEMENT_SENTENCE, min_length=1, max_length=MAX_PROMPT_CHARS,
                          description="A sentence with its subject first and then a verb with "
                                      "a singular/plural pair (is/are, was/were, has/have ...).")
    corrupted_prefix: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="Leave "
                                         "out to flip the subject's number automatically.")


def predict(model, request: PredictRequest) -> dict:
    task = agreement_task(model, request.sentence, request.corrupted_prefix)
    run = run_sweeps(model, task, [RESID_SWEEP], "denoising", AUTO_METRIC, attribution=False)
    exact, curves = run.sweeps[0].exact, run.curves
    explanation = explain(exact)
    return {
        "model": model.name,
        "sentence": request.sentence,
        "prefix": task.clean_prompts[0],
        "corrupted_prefix": task.corrupted_prompts[0],
        "correct_verb": curves.correct_verb,
        "wrong_verb": curves.wrong_verb,
        "probabilities": {
            "clean": dict(zip((curves.correct_verb, curves.wrong_verb), curves.clean_probs,
                              strict=True)),
            "corrupted": dict(zip((curves.correct_verb, curves.wrong_verb),
                                  curves.corrupted_probs, strict=True)),
        },
        "patching": plain(exact),
        "verb_curves": plain(curves),
        "explanation": {"title": explanation.title, "markdown": explanation.markdown,
                        "source": explanation.source},
    }


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class ChatRequest(ApiRequest):
    messages: list[Message] = Field(min_length=1, max_length=100)
    max_new_tokens: int = Field(20, ge=1, le=40)
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    k: int = Field(5, ge=1, le=10, description="Top tokens per layer in each token's lens.")


def token_lens(lens: LensResult, position: int, token_id: int) -> list[dict]:
    """Layer by layer at `position`: the top-k tokens, and where the generated token stands."""
    probabilities = lens.probs_of(token_id)[:, position].tolist()
    ranks = lens.ranks_of(token_id)[:, position].tolist()
    layers = []
    for row, label in enumerate(lens.layers):
        ids = lens.top_ids[row, position].tolist()
        top_probs = lens.top_log_probs[row, position].exp().tolist()
        layers.append({
            "layer": label,
            "top": [{"token_id": t, "token": lens.text_of(t), "probability": p}
                    for t, p in zip(ids, top_probs, strict=True)],
            "token_probability": probabilities[row],
            "token_rank": int(ranks[row]),
        })
    return layers


def chat(model, request: ChatRequest) -> dict:
    prompt = chat_prompt([(message.role.title(), message.content)
                          for message in request.messages])
    generation = generate(model, prompt, max_new_tokens=request.max_new_tokens,
                          temperature=request.temperature, top_p=request.top_p,
                          seed=request.seed).run()
    generated = [token.token_id for token in generation.tokens]
    reply = {"model": model.name, "reply": generation.text.strip(),
             "stop_reason": generation.stop_reason, "note": generation.note,
             "prompt_token_ids": list(generation.prompt_ids), "layers": [], "tokens": []}
    if not generated:
        return reply
    # One lens over the prompt and the reply: position p read the context that chose token p+1.
    lens = lens_of_ids(model, [*generation.prompt_ids, *generated[:-1]], k=request.k,
                       track=generated, truncate_left=True)
    first = len(generation.prompt_ids) - 1 - lens.dropped_tokens
    reply["layers"] = list(lens.layers)
    reply["tokens"] = [
        {"token_id": token.token_id, "text": token.text, "probability": token.probability,
         "position": first + index, "lens": token_lens(lens, first + index, token.token_id)}
        for index, token in enumerate(generation.tokens)]
    return reply
