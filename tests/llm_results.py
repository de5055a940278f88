"""Hand-made patching results for the AI-explanation tests, with their numbers worked out."""

from __future__ import annotations

import torch

from interp.patching import PatchingResult


def residual_result() -> PatchingResult:
    # Corrupted 0, clean 1, so effect = value; |effects| sum to 1.4: shares 0.8/1.4 = 0.5714 (57%),
    # 0.5/1.4 = 0.3571 (36%), 0.1/1.4 = 0.0714 (7%).
    values = torch.tensor([[0.0, 0.5], [0.8, 0.1]])
    return PatchingResult(model_name="tiny", method="exact", site="resid_pre",
                          granularity="layer_pos", direction="denoising", metric_name="logit_diff",
                          values=values, normalized=values.clone(), clean_value=1.0,
                          corrupted_value=0.0, tokens=("<|endoftext|>", "x"), n_prompts=1)


def head_result() -> PatchingResult:
    # Largest |normalized| at [1, 2] (0.9), [0, 1] (-0.6), [1, 0] (0.3): labels L1 H2, L0 H1, L1 H0.
    values = torch.tensor([[0.0, -0.6, 0.05, 0.0], [0.3, 0.0, 0.9, 0.1]])
    return PatchingResult(model_name="tiny", method="exact", site="z", granularity="head",
                          direction="denoising", metric_name="logit_diff", values=values,
                          normalized=values.clone(), clean_value=1.0, corrupted_value=0.0,
                          tokens=("<|endoftext|>", "x"), n_prompts=1)
