"""Attribution: which input tokens made the model predict this?

Each method gives every input token a score for one target scalar (the predicted token's
logit, a chosen token's, a logit difference between two tokens, or a generated continuation):
gradient methods read the model's local sensitivity (saliency, gradient x input), integrated
gradients and LRP split the target among the tokens so the scores add up to it (against a
baseline for IG; conserved layer by layer for LRP), and black-box methods perturb the input and
watch the output. Methods disagree, so results carry what is needed to judge them.

API (one call shape for every method; gradient work runs inside `model.exclusive()`):

    attribute(model, prompt, method, target=None, progress=None, **options) -> AttributionResult
    ATTRIBUTION_METHODS: {name: MethodSpec(function, description, gradient_based)}
    register_method(name, description, gradient_based)  # decorator for new methods
    resolve_target(model, token_ids, target) -> AttributionTarget
    target_scalar(logits_last, target) -> tensor;  target_value_of(model, token_ids, target)
    layer_flow(model, prompt, target=None, method="lrp") -> LayerFlowResult  # per layer and token
"""

# Method modules register themselves on import (gradient, LRP and black-box methods; `reporting`
# holds the run's explainer and CSV writers): add new ones to this line.
from interp.attribution import gradients, lrp, perturbation, reporting, shap_values  # noqa: F401
from interp.attribution.layers import FLOW_METHODS, LayerFlowResult, layer_flow
from interp.attribution.results import (
    ATTRIBUTION_METHODS,
    AttributionResult,
    MethodSpec,
    ProgressCallback,
    attribute,
    method_options,
    method_spec,
    prompt_token_ids,
    register_method,
)
from interp.attribution.targets import (
    MAX_CONTINUATION_TOKENS,
    TARGET_KINDS,
    AttributionTarget,
    greedy_continuation,
    resolve_target,
    target_scalar,
    target_value_of,
    token_id_of,
)

__all__ = [
    "ATTRIBUTION_METHODS", "FLOW_METHODS", "MAX_CONTINUATION_TOKENS", "TARGET_KINDS",
    "AttributionResult", "AttributionTarget", "LayerFlowResult", "MethodSpec", "ProgressCallback",
    "attribute", "greedy_continuation", "layer_flow", "method_options", "method_spec",
    "prompt_token_ids", "register_method", "resolve_target", "target_scalar", "target_value_of",
    "token_id_of",
]
