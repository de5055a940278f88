"""SHAP over input tokens: how much each token adds to the target, averaged over coalitions.

A "missing" token is replaced by a mask token (end-of-text by default) and the model is
re-run on many masked copies of the prompt (the `shap` library chooses which). The Exact
explainer enumerates every coalition and returns Shapley values; the Partition explainer walks a
binary tree of contiguous token spans and returns Owen values for that hierarchy (Shapley values
of spans, split among their tokens), at a cost set by `max_evals`. Both satisfy efficiency: the
scores sum to f(prompt) - f(every token masked).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from interp.attribution.masking import (
    DEFAULT_BATCH_SIZE,
    TargetEvaluator,
    feature_positions,
    mask_token_id,
    masked_rows,
)
from interp.attribution.results import AttributionResult, ProgressCallback, register_method
from interp.attribution.targets import AttributionTarget, resolve_target
from interp.errors import InvalidOptionError, invalid_choice

EXPLAINERS = ("partition", "exact")
EXACT_MAX_TOKENS = 12  # 2**12 = 4096 masked inputs
DEFAULT_MAX_EVALS = 500


def contiguous_linkage(n: int) -> np.ndarray:
    """A scipy linkage matrix over n features in reading order: adjacent spans merge pairwise,
    level by level (a balanced binary tree of contiguous spans, as shap's Text masker uses)."""
    clusters = [(index, 1) for index in range(n)]  # (cluster id, size)
    rows, next_id, level = [], n, 0
    while len(clusters) > 1:
        level += 1
        merged = []
        for start in range(0, len(clusters) - 1, 2):
            (left, left_size), (right, right_size) = clusters[start], clusters[start + 1]
            rows.append([left, right, float(level), left_size + right_size])
            merged.append((next_id, left_size + right_size))
            next_id += 1
        if len(clusters) % 2:
            merged.append(clusters[-1])
        clusters = merged
    return np.array(rows, dtype=float).reshape(-1, 4)


def make_explainer(kind: str, function, n_features: int, replacement_id: int):
    """A shap explainer (`kind` exact or partition) over `n_features` tokens masked by `replacement_id`."""
    import shap

    background = np.full((1, n_features), float(replacement_id))
    if kind == "exact":
        return shap.explainers.Exact(function, shap.maskers.Independent(background, max_samples=1))
    masker = shap.maskers.Partition(background, max_samples=1,
                                    clustering=contiguous_linkage(n_features))
    return shap.explainers.Partition(function, masker)


def explain_with_shap(kind: str, function, token_ids: Sequence[int], positions: Sequence[int],
                      replacement_id: int, max_evals: int, batch_size: int):
    """shap's Explanation of `function` (rows of editable tokens -> outputs) at the prompt."""
    explainer = make_explainer(kind, function, len(positions), replacement_id)
    x = np.array([[float(token_ids[p]) for p in positions]])
    if kind == "exact":
        return explainer(x, max_evals=max(max_evals, 2 ** len(positions) + 1),
                         batch_size=batch_size, silent=True)
    return explainer(x, max_evals=max_evals, batch_size=batch_size, silent=True)


@register_method("shap", "SHAP over tokens (masking by a replacement token): Partition "
                 "explainer (Owen values) or Exact (Shapley values) for short prompts", False)
def shap_attribution(model, token_ids: Sequence[int], target: AttributionTarget | None, *,
                     progress: ProgressCallback | None = None, explainer: str = "partition",
                     max_evals: int = DEFAULT_MAX_EVALS, replacement: str | int | None = None,
                     output: str = "logit", batch_size: int = DEFAULT_BATCH_SIZE,
                     keep_masked_inputs: bool = False) -> AttributionResult:
    """SHAP scores of each input token for the target (a leading BOS token is never masked and
    scores 0). `explainer`: "partition" (default; Owen values over contiguous spans, about
    `max_evals` forward passes) or "exact" (Shapley values; 2^n forward passes, at most
    EXACT_MAX_TOKENS editable tokens). `replacement`: the mask token (text or id; default
    end-of-text). `output`: "logit" or "log_prob" of the target. `keep_masked_inputs` keeps
    every masked row shap asked for in `extras["masked_inputs"]` (for benchmarks)."""
    if explainer not in EXPLAINERS:
        raise invalid_choice("SHAP explainer", explainer, EXPLAINERS)
    if max_evals < 2:
        raise InvalidOptionError(f"max_evals must be at least 2, not {max_evals}.")
    token_ids = tuple(int(t) for t in token_ids)
    positions = feature_positions(model, token_ids)
    if explainer == "exact" and len(positions) > EXACT_MAX_TOKENS:
        raise InvalidOptionError(
            f"The Exact SHAP explainer needs 2^{len(positions)} forward passes; it takes prompts "
            f"of at most {EXACT_MAX_TOKENS} tokens (after BOS). Use explainer='partition'.")
    target = resolve_target(model, token_ids, target)
    replacement_id = mask_token_id(model, replacement)
    evaluate = TargetEvaluator(target, output, batch_size)
    expected = 2 ** len(positions) if explainer == "exact" else max_evals
    seen: list[torch.Tensor] = []
    done = 0

    # Token rows, scores and extras are built on the CPU on purpose: `evaluate` (TargetEvaluator)
    # moves each chunk of rows to the weights' device and hands the values back on the CPU,
    # where shap and the result live (tests/test_model_device.py holds it to that).
    with model.exclusive() as bridge:
        def function(masked: np.ndarray) -> np.ndarray:
            nonlocal done
            rows = masked_rows(token_ids, torch.ones(masked.shape[0], len(positions)),
                               positions, replacement_id)
            rows[:, positions] = torch.from_numpy(np.rint(masked)).long()
            if keep_masked_inputs:
                seen.append(rows)
            values = evaluate(bridge, rows)
            done += rows.shape[0]
            if progress is not None:
                progress(min(done, expected), expected)
            return values.numpy().astype(np.float64)

        explanation = explain_with_shap(explainer, function, token_ids, positions,
                                        replacement_id, max_evals, batch_size)
        full_value = evaluate(bridge, torch.tensor([token_ids]))[0]

    values = torch.as_tensor(np.asarray(explanation.values[0]), dtype=torch.float32)
    base = np.asarray(explanation.base_values).reshape(-1)
    scores = torch.zeros((len(token_ids),) if values.dim() == 1 else (values.shape[1], len(token_ids)))
    if values.dim() == 1:
        scores[positions] = values
    else:  # [features, outputs] -> [outputs, tokens]
        scores[:, positions] = values.T
    kind_note = ("Exact explainer: these are Shapley values (every coalition of tokens evaluated)."
                 if explainer == "exact" else
                 "Partition explainer: these are Owen values over a binary tree of contiguous "
                 "token spans (Shapley values between spans, shared among a span's tokens), not "
                 "Shapley values; tokens far apart interact only through their spans.")
    notes = [kind_note, f"A masked token is replaced by {model.display_tokens([replacement_id])[0]!r}."]
    if positions and positions[0] == 1:
        notes.append("The leading BOS token is never masked; it scores 0.")
    single = full_value.dim() == 0
    extras = {"explainer": explainer, "max_evals": max_evals, "n_evaluations": done,
              "replacement_id": replacement_id, "output": output,
              "efficiency_gap": float((scores.sum(-1) - (full_value - torch.as_tensor(base[0] if single else base, dtype=torch.float32))).abs().max())}
    if keep_masked_inputs:
        extras["masked_inputs"] = torch.cat(seen) if seen else torch.empty(0, len(token_ids))
    return AttributionResult(
        method="shap", model_name=model.name, tokens=tuple(model.display_tokens(token_ids)),
        token_ids=token_ids, scores=scores, target=target,
        target_value=float(full_value) if single else float(full_value.sum()),
        baseline_value=float(base[0]) if single else float(base.sum()),
        extras=extras, notes=tuple(notes),
        options={"explainer": explainer, "max_evals": max_evals, "replacement": replacement,
                 "output": output, "batch_size": batch_size})
