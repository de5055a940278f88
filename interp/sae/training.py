"""Training a sparse autoencoder on a buffer of activations, on the model's device.

Inputs are scaled so their mean norm is sqrt(d_in) (one factor, folded into the weights at the
end, so the saved SAE reads raw activations). Each step minimises ||x - x_hat||^2 plus, for
ReLU, l1 * sum_i f_i ||W_dec,i|| (TopK and BatchTopK get their sparsity from the rule and add
an auxiliary loss that trains dead features on the residual, after Gao et al. 2024). Decoder
rows are kept at unit norm (the gradient along each row is removed, then rows are rescaled);
features dead for `dead_after_tokens` are re-initialised towards badly reconstructed inputs.
The state with the lowest loss on a held-out batch is kept, also when training is stopped.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.sae.buffer import ActivationBuffer
from interp.sae.modules import SAEConfig, SparseAutoencoder

TRAINING_ARCHITECTURES = ("relu", "topk", "batchtopk")
HELD_OUT_ROWS = 2048
THRESHOLD_MOMENTUM = 0.99  # running estimate of BatchTopK's inference threshold
RESAMPLE_ENCODER_SCALE = 0.2  # re-initialised encoder columns: this x the mean live norm


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run (all of them: a run is reproducible from these and the data).

    `k`: features kept per token (TopK), or on average per token of a batch (BatchTopK).
    `warmup_steps`: the learning rate rises linearly from 0, then decays linearly over the last
    fifth of the run. `resample_every`: steps between dead-feature resamplings (0: never).
    `threads`: torch threads while training (see `torch_threads`; None leaves torch's own).
    """

    architecture: str = "topk"
    expansion: int = 4
    k: int = 32
    l1_coefficient: float = 5.0
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    steps: int = 1000
    batch_size: int = 1024
    seed: int = 0
    resample_every: int = 250
    dead_after_tokens: int = 100_000
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    eval_every: int = 25
    threads: int | None = 1

    def __post_init__(self):
        if self.architecture not in TRAINING_ARCHITECTURES:
            raise invalid_choice("training architecture", self.architecture,
                                 TRAINING_ARCHITECTURES)
        for name in ("expansion", "k", "steps", "batch_size", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise InvalidOptionError(f"The learning rate must be positive, not "
                                     f"{self.learning_rate}.")


@dataclass(frozen=True)
class TrainingPoint:
    """The curves at one step, on the held-out batch: loss, mean squared error per token,
    L0 (mean active features per token), explained variance, and the features dead so far."""

    step: int
    loss: float
    mse: float
    l0: float
    explained_variance: float
    dead_features: int


@dataclass(frozen=True)
class TrainedSAE:
    """A trained SAE (best held-out state, reading raw activations), with its curves."""

    sae: SparseAutoencoder
    config: TrainingConfig
    history: tuple[TrainingPoint, ...]
    best_step: int
    steps_done: int
    stopped_early: bool
    seconds: float
    tokens_per_second: float
    hook_name: str
    model_name: str


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch threads (None: leave as is), restoring the setting after.

    SAE work is many small matrix products: on a 2-core machine shared with other jobs, two
    contending threads were measured ~8x slower per training step than one (0.35 s vs 0.044 s,
    batch 512, d_in 128, 4x)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def learning_rate_at(step: int, config: TrainingConfig) -> float:
    """The learning rate at `step`: linear warm-up, constant, then linear decay over the last fifth."""
    warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
    decay_start = int(config.steps * 0.8)
    decay = 1.0 if step < decay_start else max(0.0, (config.steps - step) /
                                                 max(config.steps - decay_start, 1))
    return config.learning_rate * warm * decay


# Active (row, feature) pairs gathered at once in the sparse code's passes: each gathered row
# is d_in floats, so the pairs of a whole batch (512 rows x 64 auxiliary features on GPT-2
# small) would be 100 MB per temporary, and training held several: +670 MB on the SAE page.
# 1,024 pairs of 768 floats are 3.1 MB (40 steps measured: 744 MB peak in one go, 435 MB in
# chunks of 4,096, 379 MB in chunks of 1,024, at the same speed).
PAIR_CHUNK = 1024


class SparseCode(torch.autograd.Function):
    """x_hat = sum_n relu(pre_n) W_dec[f_n] over chosen (row r_n, feature f_n) pairs, with
    pre_n = inputs[r_n] . W_enc[:, f_n] + b_enc[f_n] given (computed without gradients).

    Autograd through the dense [B, d_sae] code would cost three B x d_in x d_sae products per
    step; with N = B x k pairs, every gradient here is a gather and scatter of N x d_in, done
    PAIR_CHUNK pairs at a time."""

    @staticmethod
    def forward(ctx, inputs, W_enc, b_enc, W_dec, rows, features, pre):
        values = pre.relu()
        ctx.save_for_backward(inputs, W_enc, W_dec, rows, features, pre)
        return _scatter_gathered(inputs.shape[0], rows, values, W_dec, features), values

    @staticmethod
    def backward(ctx, grad_out, grad_values):
        inputs, W_enc, W_dec, rows, features, pre = ctx.saved_tensors
        values = pre.relu()
        grad_W_dec = _scatter_gathered(W_dec.shape[0], features, values, grad_out, rows)
        grad_pre = (_gathered_dots(grad_out, rows, W_dec, features) + grad_values) * (pre > 0)
        grad_W_enc = _scatter_gathered(W_dec.shape[0], features, grad_pre, inputs, rows).t()
        grad_b_enc = pre.new_zeros(W_dec.shape[0]).index_add_(0, features, grad_pre)
        grad_inputs = _scatter_gathered(inputs.shape[0], rows, grad_pre,
                                        W_enc.t().contiguous(), features)
        return grad_inputs, grad_W_enc, grad_b_enc, grad_W_dec, None, None, None


def _scatter_gathered(n: int, index: torch.Tensor, weights: torch.Tensor, source: torch.Tensor,
                      picked: torch.Tensor) -> torch.Tensor:
    """out[i] = sum of weights[m] * source[picked[m]] over the m with index[m] == i: [n, d],
    PAIR_CHUNK pairs at a time (in order, so each row sums in the same order as in one go)."""
    out = source.new_zeros(n, source.shape[1])
    for start in range(0, len(index), PAIR_CHUNK):
        chunk = slice(start, start + PAIR_CHUNK)
        out.index_add_(0, index[chunk], source[picked[chunk]] * weights[chunk, None])
    return out


def _gathered_dots(a: torch.Tensor, a_rows: torch.Tensor, b: torch.Tensor,
                   b_rows: torch.Tensor) -> torch.Tensor:
    """(a[a_rows[m]] . b[b_rows[m]]) for every m: [len(a_rows)], PAIR_CHUNK pairs at a time."""
    return torch.cat([(a[a_rows[start:start + PAIR_CHUNK]] * b[b_rows[start:start + PAIR_CHUNK]]
                       ).sum(-1) for start in range(0, len(a_rows), PAIR_CHUNK)]
                     ) if len(a_rows) else a.new_zeros(0)


class Trainer:
    """One training run; `run()` does it, `best()` is the best state so far at any time."""

    def __init__(self, buffer: ActivationBuffer, config: TrainingConfig,
                 device: torch.device | str = "cpu", centre_input: bool = False):
        self.buffer, self.config, self.device = buffer, config, torch.device(device)
        self.generator = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        n_held = min(HELD_OUT_ROWS, max(1, buffer.n_rows // 10))
        order = self.generator.permutation(buffer.n_rows)
        self.held_out_rows, self.train_rows = order[:n_held], order[n_held:]
        if len(self.train_rows) == 0:
            raise InvalidOptionError(f"{buffer.n_rows} activations are too few to train on: "
                                     "collect more tokens.")
        d_in, d_sae = buffer.d_in, buffer.d_in * config.expansion
        architecture = "relu" if config.architecture == "relu" else (
            "topk" if config.architecture == "topk" else "jumprelu")
        self.sae = SparseAutoencoder(SAEConfig(
            d_in=d_in, d_sae=d_sae, hook_name=buffer.hook_name, architecture=architecture,
            k=min(config.k, d_sae) if architecture == "topk" else None,
            model_name=buffer.model_name, centre_input=centre_input)).to(self.device)
        sample = self.sae.prepare(buffer.rows(self.train_rows[:8192], self.device))[0]
        self.scale = float(d_in ** 0.5 / sample.norm(dim=-1).mean().clamp_min(1e-12))
        with torch.no_grad():
            directions = torch.randn(d_sae, d_in, generator=torch.Generator().manual_seed(
                config.seed)).to(self.device)
            self.sae.W_dec.copy_(directions / directions.norm(dim=-1, keepdim=True))
            self.sae.W_enc.copy_(self.sae.W_dec.T)
            self.sae.b_dec.copy_(sample.mean(0) * self.scale)
        self.held_out = self.sae.prepare(buffer.rows(self.held_out_rows, self.device))[0] * self.scale
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=config.learning_rate,
                                          betas=(0.9, 0.999))
        self.threshold: float | None = None  # BatchTopK's running inference threshold
        self.last_fired = torch.zeros(d_sae, dtype=torch.long, device=self.device)
        self.tokens_seen = 0
        self.history: list[TrainingPoint] = []
        self.best_loss, self.best_step = math.inf, 0
        self.best_state: tuple[dict, float | None] | None = None
        self.step = 0
        self.started = time.perf_counter()

    # ---- one step --------------------------------------------------------------------------

    def next_batch(self) -> torch.Tensor:
        picked = self.generator.choice(self.train_rows, size=min(self.config.batch_size,
                                                                 len(self.train_rows)),
                                       replace=False)
        return self.sae.prepare(self.buffer.rows(picked, self.device))[0] * self.scale

    def chosen_pairs(self, pre: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, features) of the active pairs of TopK / BatchTopK codes, picked without
        gradients from pre-activations [B, d_sae]; BatchTopK's training pick updates its
        running inference threshold."""
        if self.config.architecture == "topk":
            values, features = pre.topk(self.sae.config.k, dim=-1)  # type: ignore[arg-type]  # TopK configs have k
            rows = torch.arange(pre.shape[0], device=pre.device)[:, None].expand_as(features)
            keep = values > 0
            return rows[keep], features[keep]
        if not training:
            rows, features = (pre > (self.threshold or 0.0)).nonzero(as_tuple=True)
            return rows, features
        kept = min(self.config.k * pre.shape[0], pre.numel())
        values, flat = pre.relu().flatten().topk(kept)
        flat = flat[values > 0]
        if len(flat):
            value = float(values[values > 0].min())
            self.threshold = value if self.threshold is None else (
                THRESHOLD_MOMENTUM * self.threshold + (1 - THRESHOLD_MOMENTUM) * value)
        return flat // pre.shape[1], flat % pre.shape[1]

    def pair_reconstruction(self, x: torch.Tensor, pre: torch.Tensor, rows: torch.Tensor,
                            features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the chosen pairs' value x decoder row [B, d_in], their values [N]), with
        gradients for those pairs only (see `SparseCode`)."""
        inputs = x - self.sae.b_dec if self.sae.config.apply_b_dec_to_input else x
        return SparseCode.apply(inputs, self.sae.W_enc, self.sae.b_enc, self.sae.W_dec,
                                rows, features, pre[rows, features])

    def losses(self, x: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
        """(total loss, squared error per token, codes [B, d_sae] without gradients)."""
        if self.config.architecture == "relu":
            codes = self.sae.pre_activations(x).relu()
            x_hat = codes @ self.sae.W_dec + self.sae.b_dec
            error = (x - x_hat).pow(2).sum(-1)
            penalty = (codes * self.sae.W_dec.norm(dim=-1)).sum(-1).mean()
            return error.mean() + self.config.l1_coefficient * penalty, error, codes.detach()
        with torch.no_grad():
            pre = self.sae.pre_activations(x)
            rows, features = self.chosen_pairs(pre, training)
        decoded, values = self.pair_reconstruction(x, pre, rows, features)
        x_hat = decoded + self.sae.b_dec
        error = (x - x_hat).pow(2).sum(-1)
        loss = error.mean()
        if training:
            loss = loss + self.config.aux_coefficient * self.aux_loss(x, x - x_hat, pre)
        codes = torch.zeros_like(pre).index_put_((rows, features), values.detach())
        return loss, error, codes

    def dead_mask(self) -> torch.Tensor:
        return (self.tokens_seen - self.last_fired) >= self.config.dead_after_tokens

    def aux_loss(self, x: torch.Tensor, residual: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """How well the dead features' top-k_aux reconstruct what the live ones missed,
        relative to the residual's own variance (0 when no feature is dead)."""
        dead = self.dead_mask()
        if not dead.any():
            return pre.new_zeros(())
        aux_k = min(int(dead.sum()), self.config.aux_k or 2 * self.config.k)
        with torch.no_grad():
            values, features = pre.masked_fill(~dead, -math.inf).topk(aux_k, dim=-1)
            rows = torch.arange(pre.shape[0], device=pre.device)[:, None].expand_as(features)
            keep = values > 0
        rows, features = rows[keep], features[keep]
        estimate, _ = self.pair_reconstruction(x, pre, rows, features)
        target = residual.detach()
        variance = (target - target.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
        return (target - estimate).pow(2).sum(-1).mean() / variance

    def train_step(self) -> None:
        x = self.next_batch()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(self.step, self.config)
        loss, _, codes = self.losses(x, training=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            directions = self.sae.unit_decoder_directions()
            grad = self.sae.W_dec.grad
            assert grad is not None  # the loss reads the decoder
            grad -= (grad * directions).sum(-1, keepdim=True) * directions
        self.optimizer.step()
        with torch.no_grad():
            self.sae.W_dec.copy_(self.sae.unit_decoder_directions())
            self.tokens_seen += x.shape[0]
            fired = (codes > 0).any(0)
            self.last_fired[fired] = self.tokens_seen
        self.step += 1
        every = self.config.resample_every
        if every and self.step % every == 0 and self.step < int(self.config.steps * 0.8):
            self.resample_dead(x)

    @torch.no_grad()
    def resample_dead(self, x: torch.Tensor) -> None:
        """Point dead features at inputs the SAE reconstructs worst (chosen with probability
        proportional to their squared error) and reset their optimizer state."""
        dead = self.dead_mask().nonzero().flatten()
        if len(dead) == 0:
            return
        _, error, _ = self.losses(x, training=False)
        weights = (error / error.sum().clamp_min(1e-12)).cpu()  # the seeded generator is a CPU one
        picks = torch.multinomial(weights, len(dead), replacement=True,
                                  generator=torch.Generator().manual_seed(
                                      self.config.seed + self.step)).to(x.device)
        _, _, codes = self.losses(x[picks], training=False)
        residual = x[picks] - (codes @ self.sae.W_dec + self.sae.b_dec)
        directions = residual / residual.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        alive = ~self.dead_mask()
        norm = self.sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else 1.0
        self.sae.W_dec[dead] = directions
        self.sae.W_enc[:, dead] = directions.T * norm * RESAMPLE_ENCODER_SCALE
        self.sae.b_enc[dead] = 0.0
        for parameter, index in ((self.sae.W_dec, (dead,)), (self.sae.W_enc, (slice(None), dead)),
                                 (self.sae.b_enc, (dead,))):
            state = self.optimizer.state.get(parameter, {})
            for name in ("exp_avg", "exp_avg_sq"):
                if name in state:
                    state[name][index] = 0.0
        self.last_fired[dead] = self.tokens_seen

    # ---- evaluation, best state ------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> TrainingPoint:
        loss, error, codes = self.losses(self.held_out, training=False)
        total = (self.held_out - self.held_out.mean(0)).pow(2).sum()
        point = TrainingPoint(
            step=self.step, loss=float(loss), mse=float(error.mean()) / self.scale ** 2,
            l0=float((codes > 0).sum(-1).float().mean()),
            explained_variance=float(1 - error.sum() / total.clamp_min(1e-12)),
            dead_features=int(self.dead_mask().sum()))
        self.history.append(point)
        if point.loss < self.best_loss:
            self.best_loss, self.best_step = point.loss, self.step
            self.best_state = (copy.deepcopy(self.sae.state_dict()), self.threshold)
        return point

    def best(self, stopped_early: bool = False) -> TrainedSAE:
        """The best held-out state so far, folded to read raw activations."""
        state, threshold = self.best_state or (self.sae.state_dict(), self.threshold)
        sae = SparseAutoencoder(self.sae.config).to(self.device)
        sae.load_state_dict(state)
        with torch.no_grad():
            if self.config.architecture == "batchtopk":
                sae.threshold.fill_(threshold if threshold is not None else 0.0)
            # x_scaled = s x: fold s so the SAE reads raw x with the same feature activations.
            sae.W_enc.mul_(self.scale)
            sae.W_dec.div_(self.scale)
            sae.b_dec.div_(self.scale)
        seconds = time.perf_counter() - self.started
        return TrainedSAE(
            sae=sae.eval().requires_grad_(False), config=self.config, history=tuple(self.history),
            best_step=self.best_step, steps_done=self.step, stopped_early=stopped_early,
            seconds=seconds, tokens_per_second=self.tokens_seen / max(seconds, 1e-9),
            hook_name=self.buffer.hook_name, model_name=self.buffer.model_name)

    def run(self, on_point: Callable[[TrainingPoint], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> TrainedSAE:
        stopped = False
        with torch_threads(self.config.threads):
            self.evaluate()
            while self.step < self.config.steps:
                if cancelled is not None and cancelled():
                    stopped = True
                    break
                self.train_step()
                if self.step % self.config.eval_every == 0 or self.step == self.config.steps:
                    point = self.evaluate()
                    if on_point is not None:
                        on_point(point)
        return self.best(stopped_early=stopped)


def train_sae(buffer: ActivationBuffer, config: TrainingConfig | None = None,
              device: torch.device | str = "cpu", centre_input: bool = False,
              on_point: Callable[[TrainingPoint], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> TrainedSAE:
    """Train an SAE on `buffer` with `config` (defaults: TopK, k = 32, 4x) on `device`.

    `on_point(point)` gets the held-out curves every `eval_every` steps; `cancelled()` is
    asked before each step, and when it says yes the best state so far is returned.
    """
    return Trainer(buffer, config or TrainingConfig(), device, centre_input).run(on_point,
                                                                                 cancelled)
