"""Exact activation patching: every component of a site, each patched in a run of its own.

Denoising copies each clean activation into the corrupted run, noising each corrupted one into
the clean run, and the metric of each patched run is recorded. On GPT-2-style models that
passed their self-check the staircase engine computes this with no wasted work; on any other
bridged model each patch is one plain hooked forward pass (slower, the same numbers), and the
result's options say which engine ran and why.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from interp.errors import InvalidOptionError, invalid_choice
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
    return patch_metrics(model, inputs, (metric,), site, granularity, direction, batch_size,
                         progress)[0]


def patch_metrics(model, inputs: PatchingInputs, metrics: Sequence[PatchingMetric],
                  site: str = "resid_pre", granularity: str = "layer_pos",
                  direction: str = "denoising", batch_size: int | None = None,
                  progress: ProgressCallback | None = None) -> tuple[PatchingResult, ...]:
    """`patch` scored by several metrics from one set of patched runs (one result per metric):
    e.g. both verbs' probabilities, or a sweep's metric and the probabilities beside it, for
    the cost of one sweep."""
    if not metrics:
        raise InvalidOptionError("Give at least one metric to score the patched runs by.")
    check_site(site, granularity)
    check_direction(direction)
    for metric in metrics:
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
    first_runs = baseline_runs(model, inputs, metrics[0], names, plain=engine == "staircase")
    runs = [first_runs, *(first_runs.scored_by(metric) for metric in metrics[1:])]
    receiving, source = first_runs.receiving_and_source(direction)
    if engine == "staircase":
        scorers = [make_scorer(model, metric, first_runs.clean_log_probs) for metric in metrics]
        # Each metric's [patch, prompt] side by side: [patch, metric * prompt].
        receiving_scores = torch.cat([r.receiving_scores(direction) for r in runs])

        def score(last_resid: torch.Tensor) -> torch.Tensor:
            return torch.cat([scorer(last_resid) for scorer in scorers], dim=1)

        def scores_of(chunk_patches):
            return staircase_scores(model, chunk_patches, receiving, source, n_prompts, score,
                                    first_corrupted, n_pos, receiving_scores)
    else:
        tokens, extra_hooks = ((corrupted_run_tokens(inputs), first_runs.noise_hooks)
                               if direction == "denoising" else (inputs.clean_tokens, ()))

        def scores_of(chunk_patches):
            logits = hooked_logits(model, chunk_patches, tokens, source, n_prompts, extra_hooks)
            return torch.cat([metric_from_logits(metric, logits, first_runs.clean_log_probs)
                              for metric in metrics], dim=1).cpu()

    values = torch.empty(len(metrics), len(all_patches))
    done = 0
    for chunk in chunks(run_order, patches_per_pass):
        scores = scores_of([all_patches[i] for i in chunk])
        values[:, torch.tensor(chunk)] = scores.view(len(chunk), len(metrics), n_prompts).mean(-1).T
        done += len(chunk)
        if progress is not None:
            progress(done, len(all_patches))

    options = run_options(inputs, sequences)
    options["engine"] = engine
    if engine_note:
        options["engine_note"] = engine_note
    shape = result_shape(granularity, n_layers, n_heads, n_pos)
    return tuple(patching_result(model, inputs, metric, metric_runs, metric_values.view(shape),
                                 method="exact", site=site, granularity=granularity,
                                 direction=direction, options=dict(options))
                 for metric, metric_runs, metric_values in zip(metrics, runs, values, strict=True))


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
