"""The clean and corrupted runs every patching method starts from, and what patched runs share.

Each method first runs the clean and the corrupted prompts once, caching the activations it will
patch from and into (`baseline_runs`), then scores patched runs by the metric at the last
position (`make_scorer`). Hooks live only inside `model.hooked`, under the model's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from interp.patching import gpt2_block
from interp.patching.gpt2_block import plain_gpt2_blocks
from interp.patching.results import (
    HEAD_SITES,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    metric_from_logits,
    normalize,
)

# About 4k token positions per forward pass: large enough that a CPU's matrix multiplies run at
# full speed, small enough (~0.3 GB of activations on GPT-2 small) to fit anywhere.
DEFAULT_TOKENS_PER_PASS = 4096

ProgressCallback = Callable[[int, int], object]


def hook_name(site: str, layer: int) -> str:
    """The bridge hook of `site` at `layer`."""
    if site in HEAD_SITES:
        return f"blocks.{layer}.attn.hook_{site}"
    return f"blocks.{layer}.hook_{site}"


def noise_hook(model, inputs: PatchingInputs):
    """A forward hook on the token embeddings adding the seeded noise of `inputs.noise`."""
    noise = inputs.noise
    assert noise is not None  # only noise-corrupted inputs get this hook
    bridge = model.bridge
    embed_std = float(bridge.W_E.float().std())
    generator = torch.Generator().manual_seed(int(noise.seed))
    positions = list(noise.positions)
    sample = torch.randn((inputs.n_prompts, len(positions), model.info.d_model),
                         generator=generator)
    sample = sample * (noise.scale * embed_std)

    def add_noise(embeddings, hook):
        # Batches of patched runs hold patch x prompt rows: each copy gets its prompt's draw.
        copies = embeddings.shape[0] // inputs.n_prompts
        noisy = embeddings.clone()
        tiled = sample.repeat(copies, 1, 1).to(noisy.dtype).to(noisy.device)
        noisy[:, positions] = noisy[:, positions] + tiled
        return noisy

    return ("hook_embed", add_noise)


def corrupted_run_tokens(inputs: PatchingInputs) -> torch.Tensor:
    """The tokens of the corrupted run: the corrupted prompts, or the clean ones when noise corrupts them."""
    if inputs.noise is not None:
        return inputs.clean_tokens
    assert inputs.corrupted_tokens is not None  # inputs have corrupted tokens or noise
    return inputs.corrupted_tokens


def cached_run(model, tokens: torch.Tensor, names: Sequence[str], extra_hooks=(),
               plain: bool = False):
    """One plain forward pass; returns (logits at the last position, {hook name: activation}).

    With `plain`, a Hugging Face GPT-2 with no extra hook runs as plain tensor operations
    (`gpt2_block.cached_forward`: none of the bridge's per-module work, the unembedding at the
    last position only), for callers whose engine passed the self-check, which compares the two.
    """
    blocks = plain_gpt2_blocks(model) if plain and not extra_hooks else None
    if blocks is not None and gpt2_block.can_cache(names, len(blocks)):
        with torch.no_grad():
            return gpt2_block.cached_forward(model, blocks, tokens.to(model.info.device), names)
    cache: dict[str, torch.Tensor] = {}

    def save(activation, hook):
        cache[hook.name] = activation.detach()

    wanted = set(names)
    hooks = list(extra_hooks) + [(name, save) for name in wanted]
    with torch.no_grad(), model.hooked(hooks) as bridge:
        logits = bridge(tokens.to(model.info.device))
    # Aliased hooks (hook_resid_post -> hook_out) report their canonical name; map back.
    by_alias = {}
    for name in wanted:
        canonical = canonical_hook_name(model, name)
        by_alias[name] = cache[canonical]
    return logits[:, -1], by_alias


def canonical_hook_name(model, name: str) -> str:
    """The bridge's own name of a hook point given by any of its aliases."""
    return model.bridge.hook_dict[name].name


def make_scorer(model, metric: PatchingMetric, clean_log_probs: torch.Tensor | None):
    """A function from final residual at the last position [patch*prompt, d] to [patch, prompt].

    The logit difference needs two columns of W_U per prompt, so it skips the full unembedding.
    """
    bridge = model.bridge
    n_prompts = len(metric.correct_ids)
    correct = torch.tensor(metric.correct_ids)
    if metric.name == "logit_diff":
        wrong = torch.tensor(metric.wrong_ids)
        w_u = bridge.W_U.detach()
        b_u = getattr(bridge, "b_U", None)
        direction = (w_u[:, correct] - w_u[:, wrong]).T  # [prompt, d_model]
        offset = (b_u[correct] - b_u[wrong]) if b_u is not None else torch.zeros(n_prompts)
        direction, offset = direction.to(w_u.device), offset.to(w_u.device)

        def direct_score(last_resid: torch.Tensor) -> torch.Tensor:
            normalized = bridge.ln_final(last_resid.unsqueeze(1))[:, 0]
            normalized = normalized.view(-1, n_prompts, normalized.shape[-1])
            return (normalized * direction).sum(-1) + offset
        return direct_score

    def score(last_resid: torch.Tensor) -> torch.Tensor:
        normalized = bridge.ln_final(last_resid.unsqueeze(1))
        logits = bridge.unembed(normalized)[:, 0]
        return metric_from_logits(metric, logits, clean_log_probs)
    return score


def selectors(site: str, granularity: str, n_heads: int, n_pos: int) -> list[tuple]:
    """Per component within a layer, the index (after the batch axis) of the patched slice."""
    if granularity == "layer":
        return [()]
    if granularity == "layer_pos":
        return [(p,) for p in range(n_pos)]
    if site == "pattern":  # [batch, head, dest, src]
        if granularity == "head":
            return [(h,) for h in range(n_heads)]
        return [(h, p) for h in range(n_heads) for p in range(n_pos)]
    if granularity == "head":  # [batch, pos, head, d_head]
        return [(slice(None), h) for h in range(n_heads)]
    return [(p, h) for h in range(n_heads) for p in range(n_pos)]


def result_shape(granularity: str, n_layers: int, n_heads: int, n_pos: int) -> tuple[int, ...]:
    """The shape of a sweep's values for `granularity`."""
    return {"layer": (n_layers,), "layer_pos": (n_layers, n_pos), "head": (n_layers, n_heads),
            "head_pos": (n_layers, n_heads, n_pos)}[granularity]


def patched_copies(receiving: torch.Tensor, source: torch.Tensor, chosen: Sequence[tuple],
                   n_prompts: int) -> torch.Tensor:
    """`receiving` [prompt, ...] repeated once per patch, each copy with its slice from `source`.

    `receiving` may already be repeated ([patch*prompt, ...], as inside a hook).
    """
    if receiving.shape[0] == n_prompts:
        out = receiving.repeat(len(chosen), *([1] * (receiving.ndim - 1)))
    else:
        out = receiving.clone()
    for i, index in enumerate(chosen):
        rows = slice(i * n_prompts, (i + 1) * n_prompts)
        out[(rows, *index)] = source[(slice(None), *index)]
    return out


@dataclass(frozen=True)
class Patch:
    """One component to patch: `site` at `layer`, the slice `index` (after the batch axis)."""

    site: str
    layer: int
    index: tuple

    @property
    def entry(self) -> tuple[int, bool]:
        """(block, mid_block): the patched run starts entering this block, or at its middle.

        A patch can't change what is computed before it, so the run starts from the receiving
        run's cached residual there. A z patch adds its rank-d_head change to the attention
        output, so it starts mid-block too; other head sites start at their block and are
        patched inside it by a hook.
        """
        if self.site in ("resid_mid", "attn_out", "z"):
            return self.layer, True
        if self.site in ("resid_post", "mlp_out"):
            return self.layer + 1, False
        return self.layer, False

    @property
    def position(self) -> int | None:
        """The one token position (destination, for the pattern) this patch edits, if one."""
        if self.site == "pattern":  # (head, destination position) or (head,)
            return self.index[1] if len(self.index) == 2 else None
        first = self.index[0] if self.index else None
        return first if isinstance(first, int) else None

    def first_changed(self, first_corrupted: int) -> int | None:
        """The first position this patch can change, or None when it changes nothing.

        Before `first_corrupted` both runs are the same prompts, so a patch there is a no-op.
        """
        position = self.position
        if position is None:
            return first_corrupted
        return position if position >= first_corrupted else None


def cache_names(site: str, n_layers: int) -> list[str]:
    """What the patched runs read from the clean and corrupted runs, at every layer."""
    names = []
    for name in dict.fromkeys(("resid_pre", "resid_mid", "k", "v", site)):
        names += [hook_name(name, layer) for layer in range(n_layers)]
    return names


@dataclass(frozen=True)
class Runs:
    """The clean and corrupted runs: per-prompt metric values and cached activations."""

    clean_cache: dict
    corrupted_cache: dict
    clean_scores: torch.Tensor  # [prompt]
    corrupted_scores: torch.Tensor  # [prompt]
    clean_log_probs: torch.Tensor
    noise_hooks: tuple
    clean_last_logits: torch.Tensor | None = None  # [prompt, d_vocab], to score other metrics
    corrupted_last_logits: torch.Tensor | None = None

    def scored_by(self, metric: PatchingMetric) -> Runs:
        """The same runs with `metric`'s per-prompt values (no new forward pass)."""
        assert self.clean_last_logits is not None and self.corrupted_last_logits is not None
        return replace(
            self, clean_scores=metric_from_logits(metric, self.clean_last_logits,
                                                  self.clean_log_probs)[0].cpu(),
            corrupted_scores=metric_from_logits(metric, self.corrupted_last_logits,
                                                self.clean_log_probs)[0].cpu())

    @property
    def clean_value(self) -> float:
        return float(self.clean_scores.mean())

    @property
    def corrupted_value(self) -> float:
        return float(self.corrupted_scores.mean())

    def receiving_and_source(self, direction: str) -> tuple[dict, dict]:
        """(cache patched into, cache patched from): denoising patches clean into corrupted."""
        if direction == "denoising":
            return self.corrupted_cache, self.clean_cache
        return self.clean_cache, self.corrupted_cache

    def receiving_scores(self, direction: str) -> torch.Tensor:
        return self.corrupted_scores if direction == "denoising" else self.clean_scores


def baseline_runs(model, inputs: PatchingInputs, metric: PatchingMetric, names: Sequence[str],
                  plain: bool = False) -> Runs:
    """The clean and corrupted runs a sweep starts from: caches at `names`, logits and metric
    values (`plain`: see `cached_run`)."""
    clean_logits, clean_cache = cached_run(model, inputs.clean_tokens, names, plain=plain)
    noise_hooks = (noise_hook(model, inputs),) if inputs.noise is not None else ()
    corrupted_logits, corrupted_cache = cached_run(model, corrupted_run_tokens(inputs), names,
                                                   extra_hooks=noise_hooks, plain=plain)
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    clean_scores = metric_from_logits(metric, clean_logits, clean_log_probs)[0].cpu()
    corrupted_scores = metric_from_logits(metric, corrupted_logits, clean_log_probs)[0].cpu()
    return Runs(clean_cache, corrupted_cache, clean_scores, corrupted_scores, clean_log_probs,
                noise_hooks, clean_logits, corrupted_logits)


def tokens_per_pass(batch_size: int | None, n_pos: int) -> int:
    """Sequences per forward pass: `batch_size` if given, else about DEFAULT_TOKENS_PER_PASS tokens."""
    return batch_size if batch_size is not None else max(1, DEFAULT_TOKENS_PER_PASS // n_pos)


def chunks(items: Sequence, size: int) -> list[Sequence]:
    """`items` in consecutive slices of at most `size`."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_options(inputs: PatchingInputs, sequences_per_pass: int) -> dict:
    """The options a result records about how it ran (batch size, and the noise if any)."""
    options: dict[str, object] = {"batch_size": sequences_per_pass}
    if inputs.noise is not None:
        options["noise"] = {"positions": list(inputs.noise.positions), "scale": inputs.noise.scale,
                            "seed": inputs.noise.seed}
    return options


def clean_and_corrupted_logits(model, inputs: PatchingInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-position logits [n_prompts, d_vocab] of the clean run and of the corrupted run."""
    clean_logits, _ = cached_run(model, inputs.clean_tokens, ())
    noise_hooks = (noise_hook(model, inputs),) if inputs.noise is not None else ()
    corrupted_logits, _ = cached_run(model, corrupted_run_tokens(inputs), (),
                                     extra_hooks=noise_hooks)
    return clean_logits, corrupted_logits


def patching_result(model, inputs: PatchingInputs, metric: PatchingMetric, runs: Runs,
                    values: torch.Tensor, *, method: str, site: str, granularity: str,
                    direction: str, options: dict) -> PatchingResult:
    """The result of a sweep: `values` with its baselines, normalization and tokens."""
    ids = inputs.clean_tokens[0].tolist()
    return PatchingResult(
        model_name=model.info.name, method=method, site=site, granularity=granularity,
        direction=direction, metric_name=metric.name, values=values,
        normalized=normalize(values, runs.clean_value, runs.corrupted_value),
        clean_value=runs.clean_value, corrupted_value=runs.corrupted_value,
        tokens=tuple(model.display_tokens(ids)), token_texts=tuple(model.token_texts(ids)),
        token_ids=tuple(ids), n_prompts=inputs.n_prompts, options=options)
