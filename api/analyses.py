"""The analyses the API serves: one registry entry each, a request model and an `interp` call.

`POST /api/<name>` validates the body with the entry's `request` model, runs
`call(model, request)` in the model's queue (`api.work`; `call(model, request, settings)` for an
entry that reads the deployment's settings), and answers with `export(result)`:
exactly the JSON the page's Export button gives for the same result (`interp.export.to_json`,
with the same extra fields). Adding an analysis to the API is one `register(Analysis(...))`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.requests import (
    MAX_PROMPT_CHARS,
    ApiRequest,
    PromptRequest,
    arguments,
    fields_model,
    validated,
)
from interp import attention as att
from interp import bias, export, toxicity
from interp import sae as saes
from interp.attribution import ATTRIBUTION_METHODS
from interp.attribution.runs import run_attribution
from interp.caching import shared_classifier
from interp.circuits import report  # noqa: F401  (registers the circuit exports)
from interp.circuits.runs import run_circuits, view_circuit
from interp.errors import InvalidPromptError, ModelNotAllowedError
from interp.logit_lens import colour_lens, direct_logit_attribution
from interp.patching import forms
from interp.patching import sweeps as patching_sweeps
from interp.patching.ablation import ABLATION_KINDS
from interp.patching_tasks import TASK_KINDS
from interp.sae.buffer import hook_width
from interp.settings import ALLOW_CUSTOM_MODELS, Settings


@dataclass(frozen=True)
class Analysis:
    """One endpoint: `call(model, request) -> result` (with `settings` third when
    `uses_settings`); `export(result) -> JSON bytes`."""

    name: str
    summary: str
    request: type[ApiRequest]
    call: Callable[..., object]
    export: Callable[[object], bytes] = export.to_json
    uses_settings: bool = False


ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add an analysis; a second one under the same name is refused."""
    if analysis.name in ANALYSES:
        raise ValueError(f"An API analysis named {analysis.name!r} is already registered.")
    ANALYSES[analysis.name] = analysis
    return analysis


# Attention ------------------------------------------------------------------------------------

class AttentionRequest(PromptRequest):
    value_weighted: bool = Field(False, description="Weight each pattern by the value vectors' "
                                 "norms (the page's 'value-norm' weighting).")
    repeat_length: int = Field(att.DEFAULT_REPEAT_LENGTH, ge=2, le=512,
                               description="Length of the repeated random sequence the "
                                           "induction score is measured on.")
    seed: int = Field(att.DEFAULT_SEED, ge=0, le=2**31 - 1)


def attention_run(model, request: AttentionRequest) -> att.AttentionRun:
    return att.run_attention(model, request.prompt, request.value_weighted,
                             request.repeat_length, request.seed)


register(Analysis("attention", "Every head's attention pattern on the prompt (the Attention "
                  "page's patterns export).", AttentionRequest, attention_run,
                  lambda run: export.to_json(run.patterns)))
register(Analysis("head_scores", "Previous-token, induction, sink and entropy scores of every "
                  "head (the Attention page's head-scores export).", AttentionRequest,
                  attention_run, lambda run: export.to_json(run.scores)))


class RolloutRequest(PromptRequest):
    head_fusion: Literal[att.HEAD_FUSIONS] = "mean"


register(Analysis("attention_rollout", "Attention rollout (Abnar & Zuidema 2020) over every "
                  "layer (the Attention page's rollout export).", RolloutRequest,
                  lambda model, request: att.attention_rollout(
                      att.attention_patterns(model, request.prompt),
                      head_fusion=request.head_fusion)))


# Logit lens and DLA -----------------------------------------------------------------------------

class LensRequest(PromptRequest):
    k: int = Field(5, ge=1, le=10, description="Top predictions kept per layer and position.")
    colour: str = Field("", max_length=200, description="Optional: one token of text (e.g. "
                        "' Mary') whose probability and rank are tracked at every layer.")


register(Analysis("logit_lens", "The logit lens: top-k, entropy and KL to the output at every "
                  "layer and position (the Logit lens page's export).", LensRequest,
                  lambda model, request: colour_lens(model, request.prompt, request.k,
                                                     request.colour)))


class DLARequest(PromptRequest):
    target: int | str | None = Field(None, description="Token id or one-token text; default: "
                                     "the model's top prediction after the prompt.")
    contrast: int | str | None = Field(None, description="Optional second token: the "
                                       "difference of the two logits is split.")


register(Analysis("dla", "Direct logit attribution of a token's logit to every head and MLP "
                  "(the Logit lens page's DLA export).", DLARequest,
                  lambda model, request: direct_logit_attribution(
                      model, request.prompt, request.target, request.contrast)))


# Activation patching ----------------------------------------------------------------------------

TASK_OPTIONS = {kind: fields_model(f"{kind.title()}TaskOptions", forms.TASK_FIELDS[kind])
                for kind in TASK_KINDS}
RunOptions = fields_model("PatchingRunOptions", forms.RUN_FIELDS)


class PatchingRequest(ApiRequest):
    task: Literal[TASK_KINDS] = "agreement"
    task_options: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="The task's inputs, as on the page's form: see the "
        "schemas " + ", ".join(model.__name__ for model in TASK_OPTIONS.values()) + ".")
    run: RunOptions = Field(default_factory=RunOptions)


def built_task(model, kind: str, task_options: dict):
    """The task built as the pages build it (`TASK_BUILDERS`) from its options' schema."""
    options = validated(TASK_OPTIONS[kind], task_options, f"The {kind} task's task_options")
    return forms.TASK_BUILDERS[kind](model, **arguments(options, forms.TASK_FIELDS[kind]))


def patching_run(model, request: PatchingRequest) -> patching_sweeps.PatchingRun:
    """The task, then every chosen sweep."""
    task = built_task(model, request.task, request.task_options)
    run = arguments(request.run, forms.RUN_FIELDS)
    return patching_sweeps.run_sweeps(model, task, run["sweeps"], run["direction"],
                                      run["metric"], run["attribution"])


register(Analysis("patching", "Activation patching of a task (agreement, IOI, fact, induction, custom "
                  "pair), every chosen sweep (the Activation patching page's whole-run export).",
                  PatchingRequest, patching_run))


# Circuits -------------------------------------------------------------------------------------

class CircuitRequest(ApiRequest):
    task: Literal[TASK_KINDS] = "ioi"
    task_options: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="The task's inputs, as for /api/patching.")
    method: Literal["eap", "eap_ig"] = "eap_ig"
    ablation: Literal[ABLATION_KINDS] = "resample"
    n_edges: int = Field(50, ge=1, le=2000, description="Edges kept in the circuit (at most "
                         "the model's edge count).")


def circuit_view(model, request: CircuitRequest):
    """Edge scores, then the circuit of `n_edges` measured on held-out pairs (the page's
    slider view and its "circuit" export)."""
    task = built_task(model, request.task, request.task_options)
    run = run_circuits(model, task, request.method, request.ablation)
    return view_circuit(model, run, min(request.n_edges, run.scores.n_edges))


register(Analysis("circuits", "Edge attribution patching, the circuit of the strongest edges "
                  "and its faithfulness on held-out pairs (the Circuits page's circuit "
                  "export).", CircuitRequest, circuit_view))


# Attribution ----------------------------------------------------------------------------------

class AttributionRequest(PromptRequest):
    methods: list[Literal[tuple(ATTRIBUTION_METHODS)]] = Field(
        default_factory=lambda: ["integrated_gradients", "gradient_x_input"], min_length=1)
    target: str | int | list[str | int] | dict[str, int] | None = Field(
        None, description="None: the predicted token; a token (id or one-token text); a pair "
        "[token, other] for a logit difference; {\"continuation\": n} for a greedy "
        "continuation of n tokens.")
    options: dict[str, dict[str, str | int | float | bool | None]] = Field(
        default_factory=dict, description="Per method, its options (as on the page).")
    faithfulness: bool = False
    sanity: bool = False
    perturbation: bool = False
    flow: bool = False


register(Analysis("attribution", "Token attribution by several methods with the chosen checks "
                  "(the Attribution page's export).", AttributionRequest,
                  lambda model, request: run_attribution(
                      model, request.prompt, tuple(request.methods), request.target,
                      request.options, request.faithfulness, request.sanity,
                      request.perturbation, None, request.flow)))


# Bias -------------------------------------------------------------------------------------------

class TemplateProbeRequest(ApiRequest):
    templates: list[str] = Field(default_factory=lambda: list(bias.DEFAULT_TEMPLATES),
                                 min_length=1, max_length=50, description="Each with {group} "
                                 "once; ending with {group} scores the group term, else the "
                                 "target word is appended.")
    groups: list[str] = Field(default_factory=lambda: list(bias.DEFAULT_GROUPS), min_length=2,
                              max_length=20, description="The first is the reference.")
    targets: list[str] = Field(default_factory=lambda: list(bias.DEFAULT_TARGETS), min_length=1,
                               max_length=50)


register(Analysis("bias_templates", "Counterfactual templates: each target's probability after "
                  "each group term, compared across templates (the Toxicity & bias page's "
                  "template export).", TemplateProbeRequest,
                  lambda model, request: bias.template_probe(
                      model, tuple(request.templates), tuple(request.groups),
                      tuple(request.targets))))


class Pair(BaseModel):
    stereotype: str = Field(min_length=1, max_length=2_000)
    anti_stereotype: str = Field(min_length=1, max_length=2_000)
    bias_type: str = Field("unspecified", max_length=100)


class PairsRequest(ApiRequest):
    pairs: list[Pair] | None = Field(None, max_length=500, description="Sentence pairs; "
                                     "leave out for the bundled sample of 24.")


def pairs_run(model, request: PairsRequest):
    if request.pairs is None:
        return bias.pairwise_likelihood(model, bias.bundled_pairs(), "bundled sample")
    pairs = tuple(bias.SentencePair(p.stereotype, p.anti_stereotype, p.bias_type)
                  for p in request.pairs)
    return bias.pairwise_likelihood(model, pairs, "API request")


register(Analysis("bias_pairs", "Pairwise sentence likelihood, CrowS-Pairs style (the Toxicity "
                  "& bias page's sentence-pairs export).", PairsRequest, pairs_run))



# Toxicity ---------------------------------------------------------------------------------------

class ClassifierRequest(ApiRequest):
    classifier: Literal[tuple(toxicity.CLASSIFIER_TYPES)] = Field(
        toxicity.DEFAULT_CLASSIFIER, description="Detoxify's model type; the local checkpoint "
        f"of {toxicity.CHECKPOINT_SETTING}, when the server sets one, is used instead.")


def classifier_of(request: ClassifierRequest, settings: Settings):
    """The shared classifier the page uses (its local checkpoint from the settings first); none
    loadable here raises ClassifierUnavailableError (503) with the page's message."""
    source = toxicity.ClassifierSource.from_settings(settings, request.classifier)
    return shared_classifier(source.model_type, source.checkpoint, source.config_folder)


class TextsRequest(ClassifierRequest):
    texts: list[Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]] = Field(
        min_length=1, max_length=toxicity.MAX_TEXTS, description="Texts to score.")


register(Analysis("toxicity_scores", "Detoxify's score of each text in every category (the "
                  "classifier the Toxicity & bias page uses).", TextsRequest,
                  lambda model, request, settings: toxicity.score_texts(
                      classifier_of(request, settings), request.texts), uses_settings=True))


class SamplingRequest(ClassifierRequest):
    k: int = Field(20, ge=1, le=100, description="Continuations sampled (continuation i from "
                   "seed + i).")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(30, ge=1, le=60)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    threshold: float = Field(toxicity.DEFAULT_THRESHOLD, ge=0.05, le=0.95,
                             description="A score above it counts as toxic.")


class ContinuationsRequest(SamplingRequest, PromptRequest):
    generate_if_flagged: bool = Field(False, description="The page's input filter: a prompt "
                                      "the classifier rates above the threshold is refused "
                                      "(422) unless this is true.")


def continuations_run(model, request: ContinuationsRequest, settings: Settings):
    """The page's Sample and score: the input filter on the prompt, then K scored samples."""
    classifier = classifier_of(request, settings)
    check = toxicity.check_prompt(classifier, request.prompt, request.threshold)
    if check.flagged and not request.generate_if_flagged:
        raise InvalidPromptError(
            f"The classifier rates this prompt {check.category} ({check.score:.2f}, above "
            f"{check.threshold:g}); its continuations would likely be offensive. Send "
            "generate_if_flagged: true to generate anyway.")
    return toxicity.continuations_toxicity(
        model, classifier, request.prompt, request.k, request.temperature, request.top_p,
        request.max_new_tokens, request.seed, request.threshold)


register(Analysis("toxicity", "K sampled continuations of a prompt, each scored by Detoxify, "
                  "after the page's input filter (the Toxicity & bias page's toxicity export).",
                  ContinuationsRequest, continuations_run, uses_settings=True))


class GroupToxicityRequest(SamplingRequest):
    template: str = Field(bias.DEFAULT_GROUP_TOXICITY_TEMPLATE, min_length=1,
                          max_length=MAX_PROMPT_CHARS, description="A prompt with {group} once.")
    groups: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=lambda: list(bias.DEFAULT_TOXICITY_GROUPS), min_length=1, max_length=20)
    k: int = Field(8, ge=1, le=100, description="Continuations per group.")
    max_new_tokens: int = Field(20, ge=1, le=60)


register(Analysis("bias_group_toxicity", "Toxicity of continuations of one prompt per group "
                  "term, the same seeds for every group (the Toxicity & bias page's per-group "
                  "export).", GroupToxicityRequest,
                  lambda model, request, settings: bias.group_toxicity(
                      model, classifier_of(request, settings), request.template,
                      tuple(request.groups), request.k, request.temperature, request.top_p,
                      request.max_new_tokens, request.seed, request.threshold),
                  uses_settings=True))


# SAE features -----------------------------------------------------------------------------------

class SAEFeaturesRequest(PromptRequest):
    sae_folder: str = Field(min_length=1, max_length=1_000, description="An SAELens folder "
                            "on the server (cfg.json + sae_weights.safetensors), as on the SAE "
                            "page's Load tab; only where the deployment allows custom models.")
    n_features: int = Field(12, ge=1, le=200, description="Features kept: those reaching "
                            "the highest activations anywhere in the prompt.")
    per_token: int = Field(5, ge=1, le=50, description="Top features listed per token.")


def sae_features(model, request: SAEFeaturesRequest, settings: Settings):
    """The SAE page's Explore tab on a saved SAE: loaded, checked against the model's width at
    its hook, then its features on every token of the prompt."""
    if not settings.allow_custom_models:
        raise ModelNotAllowedError(
            "This deployment reads no folders named in a request: SAE folders, like custom "
            f"models, need {ALLOW_CUSTOM_MODELS} on.")
    sae = saes.load_saelens(request.sae_folder, device=model.device)
    saes.check_fits(sae, model, hook_width(model, sae.config.hook_name))
    return saes.prompt_features(model, sae, request.prompt, request.n_features,
                                request.per_token)


register(Analysis("sae_features", "A saved SAE's features on every token of a prompt (the SAE "
                  "page's Explore export).", SAEFeaturesRequest, sae_features,
                  uses_settings=True))
