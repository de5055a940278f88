"""The feature browser's data: what makes each SAE feature fire, and what it writes.

One pass over the buffer counts how often each feature fires and keeps its strongest
activations. For one feature, its activation on every buffer token gives the top contexts,
examples from quantile bands of its non-zero activations (what it does when weakly on), and a
histogram. Its direct logit effect is its decoder direction times the unembedding: the tokens
it pushes up and down when written into the residual stream, ignoring the layers after it and
the final LayerNorm's scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import InvalidOptionError

# Buffer rows encoded and counted at once. Each chunk's passes hold a few rows x d_sae tensors
# (the codes, the encoder's pre-activations, TopK's scatter, a transposed copy for the top-k,
# an int64 count): with 4,096 rows of a 4x GPT-2-small SAE that was ~350 MB above the process.
CHUNK_ROWS = 1024
CONTEXT_BEFORE, CONTEXT_AFTER = 8, 3
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class FeatureScan:
    """Per feature over `n_rows` buffer tokens: `frequency` [d_sae] (fraction of tokens it is
    active on), `max_activation` [d_sae], `mean_active` [d_sae] (mean where active), and its
    `top_values`/`top_rows` [d_sae, top_n] (buffer rows of its strongest activations)."""

    frequency: torch.Tensor
    max_activation: torch.Tensor
    mean_active: torch.Tensor
    top_values: torch.Tensor
    top_rows: torch.Tensor
    n_rows: int

    def order(self, by: str = "frequency") -> list[int]:
        """Feature indices sorted (descending) by "frequency" or "max_activation"."""
        if by not in ("frequency", "max_activation"):
            raise InvalidOptionError(f"Sort features by 'frequency' or 'max_activation', not {by!r}.")
        return torch.argsort(getattr(self, by), descending=True, stable=True).tolist()


@torch.no_grad()
def feature_codes(sae, buffer, device) -> Iterator[tuple[int, torch.Tensor]]:
    """Feature activations of the whole buffer, chunk by chunk: (first row, codes [rows, d_sae])."""
    for start, rows in buffer.chunks(CHUNK_ROWS):
        yield start, sae.encode(rows.to(device))


@torch.no_grad()
def scan_features(sae, buffer, top_n: int = 16, device: torch.device | str = "cpu") -> FeatureScan:
    """Count, max, mean and top activations of every feature in one pass over `buffer`."""
    d_sae = sae.config.d_sae
    count = torch.zeros(d_sae, device=device)
    total = torch.zeros(d_sae, device=device)
    top_values = torch.full((d_sae, 0), -1.0, device=device)
    top_rows = torch.zeros((d_sae, 0), dtype=torch.long, device=device)
    for start, codes in feature_codes(sae, buffer, device):
        count += (codes > 0).sum(0)
        total += codes.sum(0)
        keep = min(top_n, codes.shape[0])
        values, rows = codes.T.topk(keep, dim=-1)
        merged_values = torch.cat([top_values, values], dim=1)
        merged_rows = torch.cat([top_rows, rows + start], dim=1)
        top_values, picked = merged_values.topk(min(top_n, merged_values.shape[1]), dim=-1)
        top_rows = merged_rows.gather(1, picked)
    n = max(buffer.n_rows, 1)
    return FeatureScan(frequency=(count / n).cpu(), max_activation=top_values[:, 0].clamp_min(0).cpu(),
                       mean_active=(total / count.clamp_min(1)).cpu(), top_values=top_values.cpu(),
                       top_rows=top_rows.cpu(), n_rows=buffer.n_rows)


@dataclass(frozen=True)
class FeatureContext:
    """A stretch of text around one token: the display tokens, the feature's activation on each
    (0 for BOS, which is not encoded), and which one is the example (`focus`)."""

    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    focus: int
    value: float


@dataclass(frozen=True)
class FeatureReport:
    """One feature of an SAE: top contexts, quantile-band examples, its activation histogram
    over the buffer tokens it fires on, and direct logit effects (decoder row @ W_U)."""

    feature: int
    model_name: str
    hook_name: str
    frequency: float
    max_activation: float
    top_contexts: tuple[FeatureContext, ...]
    bands: tuple[tuple[str, tuple[FeatureContext, ...]], ...]
    histogram_counts: tuple[int, ...]
    histogram_edges: tuple[float, ...]
    top_logits: tuple[tuple[str, float], ...]
    bottom_logits: tuple[tuple[str, float], ...]
    logit_effects: torch.Tensor
    single_seed: bool | None = None  # found by this seed only (seed stability), if checked


def _context(model, buffer, tokens: np.ndarray, lengths: np.ndarray, starts: np.ndarray,
             codes_of_window, row: int) -> FeatureContext:
    window, position = buffer.locate(row, starts)
    first = max(0, position - CONTEXT_BEFORE)
    last = min(int(lengths[window]), position + CONTEXT_AFTER + 1)
    ids = tokens[window, first:last].tolist()
    activations = [0.0 if q == 0 else float(codes_of_window(window)[q - 1])
                   for q in range(first, last)]
    return FeatureContext(tokens=tuple(model.display_tokens(ids)),
                          activations=tuple(activations), focus=position - first,
                          value=activations[position - first])


@torch.no_grad()
def feature_report(model, sae, buffer, feature: int, n_examples: int = 8, n_bands: int = 4,
                   n_logits: int = 10, single_seed: bool | None = None) -> FeatureReport:
    """The browser card of `feature` (an index below d_sae) from `buffer`."""
    d_sae = sae.config.d_sae
    if not 0 <= int(feature) < d_sae:
        raise InvalidOptionError(f"Feature {feature} does not exist: this SAE has features 0 "
                                 f"to {d_sae - 1}.")
    feature = int(feature)
    values = torch.cat([codes[:, feature].cpu() for _, codes in
                        feature_codes(sae, buffer, model.device)])
    tokens, lengths, starts = buffer.tokens(), buffer.lengths(), buffer.window_starts()

    def codes_of_window(window: int) -> torch.Tensor:
        return values[starts[window]:starts[window + 1]]

    def context(row: int) -> FeatureContext:
        return _context(model, buffer, tokens, lengths, starts, codes_of_window, row)

    active = (values > 0).nonzero().flatten()
    top = values.topk(min(n_examples, values.numel())).indices
    top_contexts = tuple(context(int(r))
                         for r in top if values[r] > 0)
    bands = []
    if len(active):
        sorted_rows = active[values[active].argsort()]
        for band in range(n_bands):
            lo, hi = band / n_bands, (band + 1) / n_bands
            inside = sorted_rows[int(lo * len(sorted_rows)):max(int(hi * len(sorted_rows)),
                                                                 int(lo * len(sorted_rows)) + 1)]
            picks = inside[torch.linspace(0, len(inside) - 1, min(n_examples // 2, len(inside))).long()]
            bands.append((f"{lo:.0%}-{hi:.0%} of its non-zero activations",
                          tuple(context(int(r))
                                for r in picks)))
    counts, edges = (np.histogram(values[active].numpy(), bins=HISTOGRAM_BINS) if len(active)
                     else (np.zeros(0, dtype=int), np.zeros(0)))
    direction = sae.W_dec[feature].to(model.device)
    effects = (direction @ model.bridge.W_U).float().cpu()
    top_ids = effects.topk(n_logits).indices.tolist()
    bottom_ids = (-effects).topk(n_logits).indices.tolist()
    return FeatureReport(
        feature=feature, model_name=model.name, hook_name=sae.config.hook_name,
        frequency=float(len(active) / max(values.numel(), 1)),
        max_activation=float(values.max()) if values.numel() else 0.0,
        top_contexts=top_contexts, bands=tuple(bands),
        histogram_counts=tuple(int(c) for c in counts),
        histogram_edges=tuple(float(e) for e in edges),
        top_logits=tuple(zip(model.display_tokens(top_ids), effects[top_ids].tolist(), strict=True)),
        bottom_logits=tuple(zip(model.display_tokens(bottom_ids), effects[bottom_ids].tolist(),
                                strict=True)),
        logit_effects=effects, single_seed=single_seed)


@dataclass(frozen=True)
class PromptFeatures:
    """Which features fire on each token of a prompt: `activations` [pos, n] of the `features`
    that reach the highest activations anywhere in it, and each token's own top features."""

    model_name: str
    hook_name: str
    prompt: str
    tokens: tuple[str, ...]
    features: tuple[int, ...]
    activations: torch.Tensor
    per_token: tuple[tuple[tuple[int, float], ...], ...]


@torch.no_grad()
def prompt_features(model, sae, prompt: str, n_features: int = 12, per_token: int = 5) -> PromptFeatures:
    """The SAE's features on every token of `prompt` (BOS first, as in training)."""
    from interp.sae.buffer import activations_at
    from interp.validation import check_prompt

    ids = check_prompt(prompt, model).as_tensor()
    codes = sae.encode(activations_at(model, sae.config.hook_name, ids)[0].to(model.device)).cpu()
    strongest = codes.max(0).values
    chosen = [int(i) for i in strongest.topk(min(n_features, codes.shape[1])).indices
              if strongest[i] > 0]
    tops = []
    for row in codes:
        values, indices = row.topk(min(per_token, row.numel()))
        tops.append(tuple((int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0))
    return PromptFeatures(model_name=model.name, hook_name=sae.config.hook_name, prompt=prompt,
                          tokens=tuple(model.display_tokens(ids[0].tolist())),
                          features=tuple(chosen), activations=codes[:, chosen], per_token=tuple(tops))
