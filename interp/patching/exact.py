"""Exact activation patching: every component of a site, each patched in a run of its own.

Denoising copies each clean activation into the corrupted run, noising each corrupted one into
the clean run, and the metric of each patched run is recorded. On GPT-2-style models that
passed their self-check the staircase engine computes this with no wasted work; on any other
bridged model each patch is one plain hooked forward pass (slower, the same numbers), and the
result's options say which engine ran and why.
"""

from __future__ import annotations

import torch

from interp.errors import invalid_choice
from interp.patching.architecture import STAIRCASE, supports
from interp.patching.hooked import check_hooks_exist, hooked_logits
from interp.patching.results import (
    HEAD_SITES,
    RESIDUAL_SITES,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    check_batch_size,
    check_direction,
    check_metric_for,
    check_site,
    metric_from_logits,
)
from interp.patching.runs import (
    Patch,
    ProgressCallback,
    baseline_runs,
    cache_names,
    chunks,
    corrupted_run_tokens,
    hook_name,
    make_scorer,
    patching_result,
    result_shape,
    run_options,
    selectors,
    tokens_per_pass,
)
from interp.patching.self_check import staircase_verdict
from interp.patching.staircase import staircase_scores


def engine_for(model) -> tuple[str, str | None]:
    """("staircase", None) where the fast engine may run, else ("hooked", why not)."""
    if not supports(model, STAIRCASE):
        return "hooked", (f"{model.info.architecture} blocks are not GPT-2's, so each patch ran "
                          "as a hooked forward pass")
    verdict = staircase_verdict(model)
    return ("staircase", None) if verdict.trusted else ("hooked", verdict.note)


def patch(model, inputs: PatchingInputs, metric: PatchingMetric, site: str = "resid_pre",
          granularity: str = "layer_pos", direction: str = "denoising",
          batch_size: int | None = None,
          progress: ProgressCallback | None = None) -> PatchingResult:
    """Exact activation patching of every component of `site` at `granularity`.

    Denoising copies each clean activation into the corrupted run; noising copies each corrupted
    activation into the clean run. `batch_size` is the number of sequences (patch x prompt) per
    forward pass (default: about 4k tokens' worth). `progress(done, total)` is called after each
    forward pass with the number of patches done; if it raises, the exception propagates and no
    hook is left on the model.
    """
    check_site(site, granularity)
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    check_batch_size(batch_size)
    check_hooks_exist(model, site)
    engine, engine_note = engine_for(model)
    info = model.info
    n_layers, n_heads, n_pos, n_prompts = info.n_layers, info.n_heads, inputs.n_positions, inputs.n_prompts
    sequences = tokens_per_pass(batch_size, n_pos)
    patches_per_pass = max(1, sequences // n_prompts)
    per_layer = selectors(site, granularity, n_heads, n_pos)
    all_patches = [Patch(site, layer, index) for layer in range(n_layers) for index in per_layer]
    # Patches that leave the same prefix untouched share forward passes (see staircase_scores).
    first_corrupted = inputs.first_corrupted_position
    run_order = sorted(range(len(all_patches)), key=lambda i: (
        all_patches[i].first_changed(first_corrupted) or 0, all_patches[i].layer))

    # Each forward pass takes the model's lock through `model.hooked`; between passes other
    # sessions may use the model (the cached runs here are ours alone).
    names = (cache_names(site, n_layers) if engine == "staircase"
             else [hook_name(site, layer) for layer in range(n_layers)])
    runs = baseline_runs(model, inputs, metric, names)
    receiving, source = runs.receiving_and_source(direction)
    if engine == "staircase":
        score = make_scorer(model, metric, runs.clean_log_probs)
        receiving_scores = runs.receiving_scores(direction)

        def scores_of(chunk_patches):
            return staircase_scores(model, chunk_patches, receiving, source, n_prompts, score,
                                    first_corrupted, n_pos, receiving_scores)
    else:
        tokens, extra_hooks = ((corrupted_run_tokens(inputs), runs.noise_hooks)
                               if direction == "denoising" else (inputs.clean_tokens, ()))

        def scores_of(chunk_patches):
            logits = hooked_logits(model, chunk_patches, tokens, source, n_prompts, extra_hooks)
            return metric_from_logits(metric, logits, runs.clean_log_probs).cpu()

    values = torch.empty(len(all_patches))
    done = 0
    for chunk in chunks(run_order, patches_per_pass):
        scores = scores_of([all_patches[i] for i in chunk])
        values[torch.tensor(chunk)] = scores.mean(dim=1)
        done += len(chunk)
        if progress is not None:
            progress(done, len(all_patches))

    values = values.view(result_shape(granularity, n_layers, n_heads, n_pos))
    options = run_options(inputs, sequences)
    options["engine"] = engine
    if engine_note:
        options["engine_note"] = engine_note
    return patching_result(model, inputs, metric, runs, values, method="exact", site=site,
                           granularity=granularity, direction=direction, options=options)


def patch_resid(model, inputs: PatchingInputs, metric: PatchingMetric, site: str = "resid_pre",
                by_position: bool = True, **options) -> PatchingResult:
    """Patch a residual-stream site (resid_pre/mid/post, attn_out, mlp_out) per layer.

    By position gives a [layer, pos] map (where in the prompt, at which depth, the information
    lives); otherwise whole layers [layer]. Options go to `patch`.
    """
    if site not in RESIDUAL_SITES:
        raise invalid_choice("residual site", site, RESIDUAL_SITES)
    return patch(model, inputs, metric, site=site,
                 granularity="layer_pos" if by_position else "layer", **options)


def patch_heads(model, inputs: PatchingInputs, metric: PatchingMetric, site: str = "z",
                by_position: bool = False, **options) -> PatchingResult:
    """Patch each attention head's output (z) or its query, key, value or pattern.

    Gives [layer, head] (all positions at once) or, by position, [layer, head, pos]. Options go
    to `patch`.
    """
    if site not in HEAD_SITES:
        raise invalid_choice("head site", site, HEAD_SITES)
    return patch(model, inputs, metric, site=site,
                 granularity="head_pos" if by_position else "head", **options)
