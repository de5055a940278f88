"""Activation patching: which activations carry the information that changes the model's answer?

We run the model on a clean prompt (which gets the answer right) and a corrupted one (which
doesn't), then copy one activation from the clean run into the corrupted run (denoising) or the
other way round (noising) and measure how far a metric such as the logit difference moves;
`normalized` is 0 when the patch changes nothing and 1 when it fully restores the clean value.
Path patching (Wang et al. 2022) restricts a head's patched output to its path into chosen
receivers, attribution patching (Nanda 2023) approximates every patch at once with one gradient,
and ablation (mean, zero, resample) removes components to see what the behaviour needs.

API (all patched runs are batched; hooks only live inside `model.hooked`):

    patch(model, inputs, metric, site="resid_pre", granularity="layer_pos",
          direction="denoising", batch_size=None, progress=None) -> PatchingResult
    patch_resid(model, inputs, metric, site="resid_pre", by_position=True, **options)
    patch_heads(model, inputs, metric, site="z", by_position=False, **options)
    patch_path(model, inputs, metric, receivers, receiver_input="q", **options)
    attribution_patch(model, inputs, metric, site="resid_pre", granularity="layer_pos",
                      direction="denoising") -> PatchingResult
    compare_methods(exact, approx, k=5) -> MethodAgreement
    clean_and_corrupted_logits(model, inputs) -> (clean [n_prompts, d_vocab], corrupted [...])
    head_means(model, tokens), ablation_hooks(...), ablate(model, tokens, metric, heads, kind)

One idea per module: `results` (sites, metrics, inputs, result types), `runs` (the clean and
corrupted runs every method starts from), `staircase` (the fast exact engine), `gpt2_block`
(the plain GPT-2 block it runs when no hook is needed), `hooked` (one
hooked forward pass per patch, on any model), `self_check` (the staircase checked against
hooked runs once per model), `architecture` (which models each method supports), `exact`,
`path`, `attribution`, `statistics` and `ablation`.

Site semantics are those of a real residual stream: patching `resid_mid` changes the residual
that flows on as well as the MLP's input. (On a TransformerLens 4 bridge the hook
`blocks.{l}.hook_resid_mid` sits on ln2's input; TransformerLens' `get_act_patch_resid_mid`
edits that activation in place, which on a bridge changes the real residual stream too, so it
agrees with ours; a hook that returns a new tensor there would change only the MLP's input.)
"""

from interp.patching.ablation import (
    ABLATION_KINDS,
    AblationResult,
    ablate,
    ablation_hooks,
    head_means,
)
from interp.patching.architecture import (
    SUPPORTED_ARCHITECTURES,
    check_architecture,
    has_gpt2_blocks,
)
from interp.patching.attribution import attribution_patch
from interp.patching.exact import patch, patch_heads, patch_metrics, patch_resid
from interp.patching.path import patch_path
from interp.patching.results import (
    DEFAULT_NOISE_SCALE,
    DIRECTIONS,
    FINAL_RESIDUAL,
    GRANULARITIES,
    HEAD_GRANULARITIES,
    HEAD_SITES,
    METRICS,
    RECEIVER_INPUTS,
    RESIDUAL_GRANULARITIES,
    RESIDUAL_SITES,
    RESIDUAL_STREAM_SITES,
    SITES,
    MethodAgreement,
    NoiseCorruption,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    correct_prob_metric,
    kl_metric,
    logit_diff_metric,
)
from interp.patching.runs import DEFAULT_TOKENS_PER_PASS, clean_and_corrupted_logits, noise_hook
from interp.patching.self_check import StaircaseVerdict, staircase_verdict
from interp.patching.statistics import average_ranks, compare_methods, pearson

__all__ = [
    "ABLATION_KINDS", "DEFAULT_NOISE_SCALE", "DEFAULT_TOKENS_PER_PASS", "DIRECTIONS",
    "FINAL_RESIDUAL", "GRANULARITIES", "HEAD_GRANULARITIES", "HEAD_SITES", "METRICS",
    "RECEIVER_INPUTS", "RESIDUAL_GRANULARITIES", "RESIDUAL_SITES", "RESIDUAL_STREAM_SITES",
    "SITES", "SUPPORTED_ARCHITECTURES", "AblationResult", "MethodAgreement", "NoiseCorruption",
    "PatchingInputs", "PatchingMetric", "PatchingResult", "StaircaseVerdict", "ablate",
    "ablation_hooks", "attribution_patch", "average_ranks", "check_architecture",
    "clean_and_corrupted_logits", "compare_methods", "correct_prob_metric", "has_gpt2_blocks",
    "head_means", "kl_metric", "logit_diff_metric", "noise_hook", "patch", "patch_heads", "patch_metrics",
    "patch_path", "patch_resid", "pearson", "staircase_verdict",
]
