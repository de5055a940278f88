"""How good an SAE is: sparsity, reconstruction, and what splicing it into the model costs.

Reconstruction metrics compare activations x [n, d] with the SAE's x_hat over buffer rows.
Splicing replaces the activation at the SAE's hook by x_hat on every position but BOS (which
SAEs here are not trained on) and measures the next-token cross-entropy; "loss recovered" puts
it between the clean model (1) and the same positions zero-ablated (0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError

# Density bands of the feature census (fraction of tokens a feature fires on).
ULTRA_RARE_BELOW = 1e-4
DENSE_ABOVE = 0.1


def l0(codes: torch.Tensor) -> float:
    """L0 = mean over tokens of #{i : f_i > 0}, the number of active features per token."""
    return float((codes > 0).sum(-1).float().mean())


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Explained variance = 1 - sum_d Var_t(x_d - x_hat_d) / sum_d Var_t(x_d): the variances
    are over tokens t, per dimension d, summed over dimensions before the ratio (not a mean of
    per-dimension or per-token ratios)."""
    residual = x - x_hat
    return float(1 - residual.var(0, unbiased=False).sum() / x.var(0, unbiased=False).sum())


def normalized_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Normalised MSE = sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean_t(x)||^2: the squared
    error relative to always predicting the mean activation (1 = no better than the mean)."""
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


@dataclass(frozen=True)
class SpliceLosses:
    """Next-token cross-entropy (nats per predicted token) with the hook's activation left
    alone, replaced by the reconstruction, and zero-ablated; KL(clean || spliced) per token.

    loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean).
    """

    ce_clean: float
    ce_spliced: float
    ce_zero: float
    kl_to_clean: float
    n_tokens: int

    @property
    def loss_recovered(self) -> float:
        gap = self.ce_zero - self.ce_clean
        return (self.ce_zero - self.ce_spliced) / gap if abs(gap) > 1e-12 else math.nan


def replacing_hook(replace: Callable[[torch.Tensor], torch.Tensor]):
    """A hook that swaps the activation at every position but the first for `replace(it)`."""
    def hook(activation, hook):
        out = activation.clone()
        out[:, 1:] = replace(activation[:, 1:]).to(activation.dtype)
        return out
    return hook


# Log-probabilities held at once while splicing (rows x positions x vocabulary floats), about
# 64 MB per tensor: 16 windows of 128 tokens of GPT-2's 50,257-token vocabulary are 412 MB
# each, and three of them at once put the SAE page over a hosted app's memory.
LOGIT_FLOATS_PER_BATCH = 16_000_000


@torch.no_grad()
def _log_probs(model, token_ids: torch.Tensor, hooks) -> torch.Tensor:
    with model.hooked(hooks) as bridge:
        logits = bridge(token_ids.to(model.device), use_cache=False)
    return logits[:, :-1].float().log_softmax(-1)


def _cross_entropy_sum(log_probs: torch.Tensor, targets: torch.Tensor,
                       counted: torch.Tensor) -> float:
    return float(-(log_probs.gather(-1, targets[..., None])[..., 0] * counted).sum())


def splice_batch_size(n_positions: int, d_vocab: int, batch_size: int | None) -> int:
    """Windows per splicing batch: `batch_size` at most, within LOGIT_FLOATS_PER_BATCH."""
    fitting = max(1, LOGIT_FLOATS_PER_BATCH // max(1, n_positions * d_vocab))
    return fitting if batch_size is None else max(1, min(batch_size, fitting))


@torch.no_grad()
def splice_losses(model, token_ids: torch.Tensor, hook: str,
                  replace: Callable[[torch.Tensor], torch.Tensor],
                  lengths: torch.Tensor | None = None, batch_size: int | None = None) -> SpliceLosses:
    """Cross-entropies and KL on `token_ids` [n, pos] (BOS first; window i counts its first
    `lengths[i]` tokens, all when None) with the activation at `hook` replaced by
    `replace(activation)` (e.g. an SAE's reconstruction). Windows go through in batches of at
    most `batch_size` (default: as many as LOGIT_FLOATS_PER_BATCH allows)."""
    if token_ids.shape[1] < 2:
        raise InvalidOptionError("Splicing needs windows of at least 2 tokens.")
    if lengths is None:
        lengths = torch.full((token_ids.shape[0],), token_ids.shape[1])
    step = splice_batch_size(token_ids.shape[1], model.info.d_vocab, batch_size)
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0}
    count = 0
    for start in range(0, token_ids.shape[0], step):
        batch_lengths = lengths[start:start + step].to(model.device)
        batch = token_ids[start:start + step, :int(batch_lengths.max())].long()
        targets = batch[:, 1:].to(model.device)
        # Position p predicts token p + 1, which must lie inside the window.
        counted = (torch.arange(targets.shape[1], device=model.device)[None, :] + 1
                   < batch_lengths[:, None]).float()
        zero = _log_probs(model, batch, [(hook, replacing_hook(torch.zeros_like))])
        sums["zero"] += _cross_entropy_sum(zero, targets, counted)
        del zero
        clean = _log_probs(model, batch, [])
        spliced = _log_probs(model, batch, [(hook, replacing_hook(replace))])
        sums["clean"] += _cross_entropy_sum(clean, targets, counted)
        sums["spliced"] += _cross_entropy_sum(spliced, targets, counted)
        sums["kl"] += float(((clean.exp() * (clean - spliced)).sum(-1) * counted).sum())
        count += int(counted.sum())
    return SpliceLosses(ce_clean=sums["clean"] / count, ce_spliced=sums["spliced"] / count,
                        ce_zero=sums["zero"] / count, kl_to_clean=sums["kl"] / count,
                        n_tokens=count)


@dataclass(frozen=True)
class SAEMetrics:
    """An SAE's scores on `n_rows` buffer rows (reconstruction) and `splice.n_tokens` predicted
    tokens (splicing), and its feature census over the whole buffer: `density` [d_sae] is the
    fraction of tokens each feature fires on; dead = 0 over those tokens, ultra-rare below
    `ultra_rare_below`, dense above `dense_above`."""

    model_name: str
    hook_name: str
    d_sae: int
    l0: float
    explained_variance: float
    normalized_mse: float
    splice: SpliceLosses
    n_rows: int
    density: torch.Tensor
    density_tokens: int
    ultra_rare_below: float = ULTRA_RARE_BELOW
    dense_above: float = DENSE_ABOVE

    @property
    def loss_recovered(self) -> float:
        return self.splice.loss_recovered

    @property
    def dead(self) -> int:
        return int((self.density == 0).sum())

    @property
    def ultra_rare(self) -> int:
        return int(((self.density > 0) & (self.density < self.ultra_rare_below)).sum())

    @property
    def dense(self) -> int:
        return int((self.density > self.dense_above).sum())


# Buffer rows reconstructed at once when scoring: an SAE's dense codes are rows x d_sae floats
# (20,000 rows of a 4x GPT-2-small SAE are 245 MB, and its pre-activations as much again).
# Measured on that SAE over 20,000 rows: 2,048 rows a chunk peaked 297 MB above the process,
# 512 rows 107 MB, with the same scores to 14 digits.
RECONSTRUCTION_CHUNK_ROWS = 512


def reconstruction_scores(sae, buffer, max_rows: int = 20_000,
                          device: torch.device | str = "cpu",
                          chunk_rows: int = RECONSTRUCTION_CHUNK_ROWS) -> tuple[float, float, float, int]:
    """(L0, explained variance, normalised MSE, rows used) on the buffer's last `max_rows` rows,
    reconstructed `chunk_rows` at a time: the formulas' sums (of x, x^2, x - x_hat and its
    square, per dimension) accumulate in float64, so no more than one chunk's codes is held."""
    start = max(0, buffer.n_rows - max_rows)
    n = buffer.n_rows - start
    if n == 0:
        raise InvalidOptionError("The activation buffer is empty: collect some tokens first.")
    sums = {name: torch.zeros(buffer.d_in, dtype=torch.float64, device=device)
            for name in ("x", "x2", "r", "r2")}
    active = 0
    with torch.no_grad():
        for first in range(start, buffer.n_rows, chunk_rows):
            x = buffer.rows(range(first, min(first + chunk_rows, buffer.n_rows)), device)
            x_hat, codes = sae(x)
            active += int((codes > 0).sum())
            del codes
            x, residual = x.double(), (x - x_hat).double()
            sums["x"] += x.sum(0)
            sums["x2"] += x.pow(2).sum(0)
            sums["r"] += residual.sum(0)
            sums["r2"] += residual.pow(2).sum(0)
    # sum_t (v_t - mean v)^2 = sum_t v_t^2 - (sum_t v_t)^2 / n, per dimension.
    centred_x = float((sums["x2"] - sums["x"].pow(2) / n).sum())
    centred_r = float((sums["r2"] - sums["r"].pow(2) / n).sum())
    variance = 1 - centred_r / centred_x if centred_x > 0 else math.nan
    nmse = float(sums["r2"].sum()) / centred_x if centred_x > 0 else math.nan
    return active / n, variance, nmse, n


def evaluate_sae(model, sae, buffer, density: torch.Tensor, max_rows: int = 20_000,
                 splice_windows: int = 32) -> SAEMetrics:
    """Every metric of `sae` on `buffer` (collected from `model` at the SAE's hook); `density`
    comes from `interp.sae.features.scan_features` over the same buffer."""
    sparsity, variance, nmse, n_rows = reconstruction_scores(sae, buffer, max_rows, model.device)
    windows = torch.from_numpy(buffer.tokens()[:splice_windows])
    lengths = torch.from_numpy(buffer.lengths()[:splice_windows])
    splice = splice_losses(model, windows, sae.config.hook_name, sae.reconstruct, lengths)
    return SAEMetrics(model_name=model.name, hook_name=sae.config.hook_name,
                      d_sae=sae.config.d_sae, l0=sparsity, explained_variance=variance,
                      normalized_mse=nmse, splice=splice, n_rows=n_rows,
                      density=density.cpu(), density_tokens=buffer.n_rows)
