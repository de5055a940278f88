"""Activation patching: which activations carry the information that changes the model's answer?

We run the model on a clean prompt (which gets the answer right) and a corrupted one (which
doesn't), then copy one activation from the clean run into the corrupted run (denoising) or the
other way round (noising) and measure how far a metric such as the logit difference moves;
`normalized` is 0 when the patch changes nothing and 1 when it fully restores the clean value.
Path patching (Wang et al. 2022) restricts a head's patched output to its path into chosen
receivers, and attribution patching (Nanda 2023) approximates every patch at once with one
gradient, (clean - corrupted activation) times d metric / d activation.

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

Metrics: `logit_diff_metric`, `correct_prob_metric`, `kl_metric`. Inputs: `PatchingInputs` with
corrupted tokens, or `NoiseCorruption` (causal tracing, Meng et al. 2022).

Speed: a patch can't change anything computed before it, so each patched run starts at the
patched layer from the cached activations of the run it patches into, driving the bridge's
blocks directly (the bridge's own `start_at_layer` still executes the earlier blocks and throws
their output away); many patches share one forward pass (the batch axis holds patch x prompt,
and runs join the batch at the block where they start); a patch at position p leaves positions
before p unchanged (causal attention), so those are read from the cache, not recomputed; and
only the last position goes through the last block's MLP, the final layer norm and the
unembedding (restricted to the answer columns for the logit difference).

Site semantics are those of a real residual stream: patching `resid_mid` changes the residual
that flows on as well as the MLP's input. (On a TransformerLens 4 bridge the hook
`blocks.{l}.hook_resid_mid` sits on ln2's input, so patching that hook alone changes only the
MLP's input; `transformer_lens.patching.get_act_patch_resid_mid` on a bridge measures that.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from interp.errors import InvalidOptionError, InvalidPromptError, invalid_choice

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v",
         "pattern")
RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("z", "q", "k", "v", "pattern")
GRANULARITIES = ("layer_pos", "layer", "head", "head_pos")
RESIDUAL_GRANULARITIES = ("layer_pos", "layer")
HEAD_GRANULARITIES = ("head", "head_pos")
DIRECTIONS = ("denoising", "noising")
METRICS = ("logit_diff", "correct_prob", "kl_to_clean")
RECEIVER_INPUTS = ("q", "k", "v")
FINAL_RESIDUAL = "resid_final"

# About 4k token positions per forward pass: large enough that a CPU's matrix multiplies run at
# full speed, small enough (~0.3 GB of activations on GPT-2 small) to fit anywhere.
DEFAULT_TOKENS_PER_PASS = 4096

# Position-specific patches are split into this many groups of neighbouring first changed
# positions; a group's pass computes only the positions from the group's first one. More groups
# compute fewer positions in smaller batches: 5 was fastest for 20-token prompts on GPT-2 small
# (1 thread: 4.3 s, vs 4.7 s for one group per position and 7.2 s with no groups).
PREFIX_GROUPS = 5

ProgressCallback = Callable[[int, int], object]


# ---------------------------------------------------------------------------------------------
# Metrics and inputs


@dataclass(frozen=True)
class PatchingMetric:
    """What a patched run is scored by, at the last position, averaged over prompts.

    `logit_diff`: logit[correct] - logit[wrong]; `correct_prob`: softmax probability of the
    correct token; `kl_to_clean`: KL(clean || patched) of the next-token distributions (0 means
    the clean behaviour). One answer token per prompt.
    """

    name: str
    correct_ids: tuple[int, ...]
    wrong_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.name not in METRICS:
            raise invalid_choice("patching metric", self.name, METRICS)
        if not self.correct_ids:
            raise InvalidOptionError("The metric needs one correct answer token per prompt.")
        if self.name == "logit_diff":
            if self.wrong_ids is None or len(self.wrong_ids) != len(self.correct_ids):
                raise InvalidOptionError(
                    "The logit difference needs one wrong answer token per prompt, as many as "
                    f"correct ones ({len(self.correct_ids)}).")
        elif self.wrong_ids is not None:
            raise InvalidOptionError(
                f"The {self.name} metric reads only the correct answer; leave wrong_ids empty "
                "or use logit_diff_metric.")


def logit_diff_metric(correct_ids: Sequence[int], wrong_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of logit[correct] - logit[wrong] at the last position."""
    return PatchingMetric("logit_diff", tuple(int(i) for i in correct_ids),
                          tuple(int(i) for i in wrong_ids))


def correct_prob_metric(correct_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of the probability of the correct answer at the last position."""
    return PatchingMetric("correct_prob", tuple(int(i) for i in correct_ids))


def kl_metric(correct_ids: Sequence[int]) -> PatchingMetric:
    """Mean over prompts of KL(clean || patched) at the last position (0 = clean behaviour).

    `correct_ids` only records the answer for the reader; the KL uses the whole distribution.
    """
    return PatchingMetric("kl_to_clean", tuple(int(i) for i in correct_ids))


@dataclass(frozen=True)
class NoiseCorruption:
    """Causal tracing's corruption (Meng et al. 2022): Gaussian noise on some token embeddings.

    The noise has standard deviation `scale` times the std of the model's token embedding
    matrix, is drawn from a generator seeded with `seed` (so the same settings give the same
    corrupted run; each prompt of a dataset gets its own draw), and is added at `positions`
    only (BOS = position 0).
    """

    positions: tuple[int, ...]
    scale: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if not self.positions:
            raise InvalidOptionError("Choose at least one token position to add noise to.")
        if len(set(self.positions)) != len(self.positions):
            raise InvalidOptionError(f"Noise positions repeat: {self.positions}. List each once.")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidOptionError(f"The noise scale must be a positive number, not {self.scale}.")


@dataclass(frozen=True)
class PatchingInputs:
    """Clean prompts and how to corrupt them: token ids [n_prompts, pos] (BOS first), or noise."""

    clean_tokens: torch.Tensor
    corrupted_tokens: torch.Tensor | None = None
    noise: NoiseCorruption | None = None

    def __post_init__(self):
        if (self.corrupted_tokens is None) == (self.noise is None):
            raise InvalidOptionError(
                "Give exactly one corruption: corrupted prompts (corrupted_tokens) or noise on "
                "the clean prompts' embeddings (noise=NoiseCorruption(...)).")
        if self.clean_tokens.ndim != 2 or self.clean_tokens.shape[1] == 0:
            raise InvalidPromptError(
                "Clean tokens must be a [n_prompts, pos] tensor of token ids with at least one "
                f"token; got shape {tuple(self.clean_tokens.shape)}.")
        if self.corrupted_tokens is not None and self.corrupted_tokens.shape != self.clean_tokens.shape:
            raise InvalidPromptError(
                f"The clean prompts have {self.clean_tokens.shape[-1]} tokens and the corrupted "
                f"ones {self.corrupted_tokens.shape[-1]} (shapes {tuple(self.clean_tokens.shape)} "
                f"and {tuple(self.corrupted_tokens.shape)}). Prompts of different token lengths "
                "can't be patched position by position: reword the corrupted prompt so each "
                "prompt pair has the same number of tokens.")
        if self.noise is not None:
            n_pos = self.clean_tokens.shape[1]
            outside = [p for p in self.noise.positions if not 0 <= p < n_pos]
            if outside:
                raise InvalidOptionError(
                    f"Noise positions {outside} are outside the prompt (positions 0 to "
                    f"{n_pos - 1}).")

    @property
    def n_prompts(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.clean_tokens.shape[1])


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class PatchingResult:
    """The patched metric for every component, with the baselines needed to read it.

    `values` (mean over prompts) has shape [layer, pos] (granularity "layer_pos"), [layer]
    ("layer"), [layer, head] ("head") or [layer, head, pos] ("head_pos"; for the pattern site,
    pos is the destination position). `normalized` = (values - corrupted_value) /
    (clean_value - corrupted_value): 1 is the clean run's value, 0 the corrupted run's, for
    either direction. NaN marks components that can't act (path patching senders at or after
    every receiver's layer); `normalized` is all NaN when the clean and corrupted values are
    equal (nothing to restore).
    """

    model_name: str
    method: str
    site: str
    granularity: str
    direction: str
    metric_name: str
    values: torch.Tensor
    normalized: torch.Tensor
    clean_value: float
    corrupted_value: float
    tokens: tuple[str, ...]
    n_prompts: int
    options: dict = field(default_factory=dict)

    def label(self, index: Sequence[int]) -> str:
        """A reader's name for the component at `index` of `values` ("L3 H2", "L5 pos 7 '␣Paris'")."""
        layer = int(index[0])
        if self.granularity == "layer":
            return f"L{layer}"
        if self.granularity == "layer_pos":
            pos = int(index[1])
            return f"L{layer} pos {pos} '{self.tokens[pos]}'"
        head = int(index[1])
        if self.granularity == "head":
            return f"L{layer} H{head}"
        pos = int(index[2])
        return f"L{layer} H{head} pos {pos} '{self.tokens[pos]}'"

    def top_components(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The k components with the largest |normalized| effect: (label, normalized, raw)."""
        flat = self.normalized.flatten()
        finite = torch.nonzero(torch.isfinite(flat)).flatten()
        order = finite[torch.argsort(flat[finite].abs(), descending=True, stable=True)][:k]
        shape = self.normalized.shape
        rows = []
        for flat_index in order.tolist():
            index = torch.unravel_index(torch.tensor(flat_index), shape)
            index = [int(i) for i in index]
            rows.append((self.label(index), float(self.normalized[tuple(index)]),
                         float(self.values[tuple(index)])))
        return rows


@dataclass(frozen=True)
class MethodAgreement:
    """How well attribution patching (approx) matches exact patching on the same components."""

    pearson: float
    spearman: float
    worst: list[tuple[str, float, float]]  # (label, exact normalized, approx normalized)


# ---------------------------------------------------------------------------------------------
# Validation helpers


def check_site(site: str, granularity: str) -> None:
    """Raise InvalidOptionError unless `site` and `granularity` go together."""
    if site not in SITES:
        raise invalid_choice("patching site", site, SITES)
    if granularity not in GRANULARITIES:
        raise invalid_choice("granularity", granularity, GRANULARITIES)
    valid = RESIDUAL_GRANULARITIES if site in RESIDUAL_SITES else HEAD_GRANULARITIES
    if granularity not in valid:
        raise invalid_choice(f"granularity for site {site!r}", granularity, valid)


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise invalid_choice("patching direction", direction, DIRECTIONS)


def check_metric_for(metric: PatchingMetric, inputs: PatchingInputs, model) -> None:
    if not isinstance(metric, PatchingMetric):
        raise InvalidOptionError(
            "The metric must be a PatchingMetric: use logit_diff_metric, correct_prob_metric or "
            "kl_metric.")
    if len(metric.correct_ids) != inputs.n_prompts:
        raise InvalidOptionError(
            f"The metric has {len(metric.correct_ids)} answer token(s) but there are "
            f"{inputs.n_prompts} prompt(s); give one answer per prompt.")
    d_vocab = model.info.d_vocab
    ids = list(metric.correct_ids) + list(metric.wrong_ids or ())
    bad = [i for i in ids if not 0 <= i < d_vocab]
    if bad:
        raise InvalidOptionError(f"Answer token ids {bad} are outside the vocabulary (0 to {d_vocab - 1}).")
    n_ctx = model.info.n_ctx
    if inputs.n_positions > n_ctx:
        raise InvalidPromptError(
            f"The prompts are {inputs.n_positions} tokens long but {model.info.label} reads at "
            f"most {n_ctx}. Shorten them.")


def check_block_layout(model) -> None:
    """Refuse models whose blocks can't be driven one by one from a residual tensor alone.

    The engine calls blocks with only the residual (positions were added at the embedding) and
    splits a block as resid_post = resid_mid + mlp(ln2(resid_mid)): true of GPT-2-style models,
    not of rotary (LLaMA, NeoX) or parallel attention/MLP (GPT-J) ones.
    """
    cfg = model.bridge.cfg
    positional = getattr(cfg, "positional_embedding_type", "standard")
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    if positional != "standard" or parallel:
        raise InvalidOptionError(
            "Exact patching here supports GPT-2-style models (learned positions, attention then "
            f"MLP); {model.info.label} uses {positional} positions"
            f"{' and parallel attention/MLP' if parallel else ''}. Use attribution_patch, or a "
            "GPT-2 model.")


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidOptionError(f"batch_size must be a positive whole number or None, not {batch_size!r}.")


# ---------------------------------------------------------------------------------------------
# Running the model: cached runs, and patched runs that start at the patched layer


def hook_name(site: str, layer: int) -> str:
    """The bridge hook of `site` at `layer`."""
    if site in HEAD_SITES:
        return f"blocks.{layer}.attn.hook_{site}"
    return f"blocks.{layer}.hook_{site}"


def noise_hook(model, inputs: PatchingInputs):
    """A forward hook on the token embeddings adding the seeded noise of `inputs.noise`."""
    noise = inputs.noise
    bridge = model.bridge
    embed_std = float(bridge.W_E.float().std())
    generator = torch.Generator().manual_seed(int(noise.seed))
    positions = list(noise.positions)
    sample = torch.randn((inputs.n_prompts, len(positions), model.info.d_model),
                         generator=generator)
    sample = sample * (noise.scale * embed_std)

    def add_noise(embeddings, hook):
        noisy = embeddings.clone()
        noisy[:, positions] = noisy[:, positions] + sample.to(noisy.dtype).to(noisy.device)
        return noisy

    return ("hook_embed", add_noise)


def corrupted_run_tokens(inputs: PatchingInputs) -> torch.Tensor:
    return inputs.corrupted_tokens if inputs.noise is None else inputs.clean_tokens


def cached_run(model, tokens: torch.Tensor, names: Sequence[str], extra_hooks=()):
    """One plain forward pass; returns (logits at the last position, {hook name: activation})."""
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

        def score(last_resid: torch.Tensor) -> torch.Tensor:
            normalized = bridge.ln_final(last_resid.unsqueeze(1))[:, 0]
            normalized = normalized.view(-1, n_prompts, normalized.shape[-1])
            return (normalized * direction).sum(-1) + offset
        return score

    def score(last_resid: torch.Tensor) -> torch.Tensor:
        normalized = bridge.ln_final(last_resid.unsqueeze(1))
        logits = bridge.unembed(normalized)[:, 0]
        return metric_from_logits(metric, logits, clean_log_probs)
    return score


def metric_from_logits(metric: PatchingMetric, logits: torch.Tensor,
                       clean_log_probs: torch.Tensor | None) -> torch.Tensor:
    """Per-prompt metric [patch, prompt] from last-position logits [patch*prompt, d_vocab]."""
    n_prompts = len(metric.correct_ids)
    logits = logits.view(-1, n_prompts, logits.shape[-1])
    correct = torch.tensor(metric.correct_ids, device=logits.device)
    prompt_index = torch.arange(n_prompts, device=logits.device)
    if metric.name == "logit_diff":
        wrong = torch.tensor(metric.wrong_ids, device=logits.device)
        return logits[:, prompt_index, correct] - logits[:, prompt_index, wrong]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if metric.name == "correct_prob":
        return log_probs[:, prompt_index, correct].exp()
    clean = clean_log_probs.unsqueeze(0)
    return (clean.exp() * (clean - log_probs)).sum(-1)


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


def cache_names(site: str, n_layers: int) -> list[str]:
    """What the patched runs read from the clean and corrupted runs, at every layer."""
    names = []
    for name in dict.fromkeys(("resid_pre", "resid_mid", "k", "v", site)):
        names += [hook_name(name, layer) for layer in range(n_layers)]
    return names


@dataclass(frozen=True)
class Runs:
    """The clean and corrupted runs: metric values and cached activations, by direction."""

    clean_cache: dict
    corrupted_cache: dict
    clean_value: float
    corrupted_value: float
    clean_log_probs: torch.Tensor
    noise_hooks: tuple


def baseline_runs(model, inputs: PatchingInputs, metric: PatchingMetric, names: Sequence[str]) -> Runs:
    clean_logits, clean_cache = cached_run(model, inputs.clean_tokens, names)
    noise_hooks = (noise_hook(model, inputs),) if inputs.noise is not None else ()
    corrupted_logits, corrupted_cache = cached_run(model, corrupted_run_tokens(inputs), names,
                                                   extra_hooks=noise_hooks)
    clean_log_probs = torch.log_softmax(clean_logits.float(), dim=-1)
    clean_value = float(metric_from_logits(metric, clean_logits, clean_log_probs).mean())
    corrupted_value = float(metric_from_logits(metric, corrupted_logits, clean_log_probs).mean())
    return Runs(clean_cache, corrupted_cache, clean_value, corrupted_value, clean_log_probs,
                noise_hooks)


def normalize(values: torch.Tensor, clean_value: float, corrupted_value: float) -> torch.Tensor:
    gap = clean_value - corrupted_value
    if gap == 0:
        return torch.full_like(values, float("nan"))
    return (values - corrupted_value) / gap


def tokens_per_pass(batch_size: int | None, n_pos: int) -> int:
    """Sequences per forward pass: `batch_size` if given, else about DEFAULT_TOKENS_PER_PASS tokens."""
    return batch_size if batch_size is not None else max(1, DEFAULT_TOKENS_PER_PASS // n_pos)


def chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------------------------
# The engine


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
    check_block_layout(model)
    info = model.info
    n_layers, n_heads, n_pos, n_prompts = info.n_layers, info.n_heads, inputs.n_positions, inputs.n_prompts
    sequences = tokens_per_pass(batch_size, n_pos)
    patches_per_pass = max(1, sequences // n_prompts)
    per_layer = selectors(site, granularity, n_heads, n_pos)
    all_patches = [Patch(site, layer, index) for layer in range(n_layers) for index in per_layer]
    # Patches that leave the same prefix untouched share forward passes (see staircase_scores).
    run_order = sorted(range(len(all_patches)),
                       key=lambda i: (all_patches[i].first_position, all_patches[i].layer))
    positions_per_group = math.ceil(n_pos / PREFIX_GROUPS)

    # Each forward pass takes the model's lock through `model.hooked`; between passes other
    # sessions may use the model (the cached runs here are ours alone).
    runs = baseline_runs(model, inputs, metric, cache_names(site, n_layers))
    receiving, source = ((runs.corrupted_cache, runs.clean_cache) if direction == "denoising"
                         else (runs.clean_cache, runs.corrupted_cache))
    score = make_scorer(model, metric, runs.clean_log_probs)
    values = torch.empty(len(all_patches))
    done = 0
    for chunk in chunks(run_order, patches_per_pass):
        scores = staircase_scores(model, [all_patches[i] for i in chunk], receiving, source,
                                  n_prompts, score, positions_per_group)
        values[torch.tensor(chunk)] = scores.mean(dim=1)
        done += len(chunk)
        if progress is not None:
            progress(done, len(all_patches))

    values = values.view(result_shape(granularity, n_layers, n_heads, n_pos))
    return PatchingResult(
        model_name=info.name, method="exact", site=site, granularity=granularity,
        direction=direction, metric_name=metric.name, values=values,
        normalized=normalize(values, runs.clean_value, runs.corrupted_value),
        clean_value=runs.clean_value, corrupted_value=runs.corrupted_value,
        tokens=tuple(model.display_tokens(inputs.clean_tokens[0].tolist())),
        n_prompts=n_prompts, options=run_options(inputs, sequences))


def run_options(inputs: PatchingInputs, sequences_per_pass: int) -> dict:
    options = {"batch_size": sequences_per_pass}
    if inputs.noise is not None:
        options["noise"] = {"positions": list(inputs.noise.positions), "scale": inputs.noise.scale,
                            "seed": inputs.noise.seed}
    return options


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
        run's cached residual there; head sites start at their block and patch inside it.
        """
        if self.site in ("resid_mid", "attn_out"):
            return self.layer, True
        if self.site in ("resid_post", "mlp_out"):
            return self.layer + 1, False
        return self.layer, False

    @property
    def first_position(self) -> int:
        """The first token position this patch can change (attention is causal)."""
        if self.site == "pattern":  # (head, destination position) or (head,)
            return self.index[1] if len(self.index) == 2 else 0
        first = self.index[0] if self.index else 0
        return first if isinstance(first, int) else 0


def position_slice(site: str, activation: torch.Tensor, first: int) -> torch.Tensor:
    """The part of an activation at positions >= first (queries, for the pattern)."""
    return activation[:, :, first:] if site == "pattern" else activation[:, first:]


def shifted(site: str, index: tuple, first: int) -> tuple:
    """A patch index in an activation that starts at position `first`."""
    if first == 0:
        return index
    if site == "pattern":
        return (index[0], index[1] - first)
    return (index[0] - first, *index[1:])


def starting_residual(patches: Sequence[Patch], receiving: dict, source: dict,
                      n_prompts: int, first: int) -> torch.Tensor:
    """The residual [patch*prompt, pos - first, d] where these patches' runs start.

    All patches share a site and layer; `first` is where the computed positions begin.
    """
    site, layer = patches[0].site, patches[0].layer
    chosen = [shifted(site, p.index, first) for p in patches]
    name = hook_name(site, layer)
    n_copies = len(chosen)

    def suffix(run: dict, hook: str) -> torch.Tensor:
        return run[hook][:, first:]
    if site in ("resid_pre", "resid_mid", "resid_post"):
        return patched_copies(suffix(receiving, name), suffix(source, name), chosen, n_prompts)
    if site == "attn_out":  # resid_mid = resid_pre + attn_out
        resid_pre = suffix(receiving, hook_name("resid_pre", layer)).repeat(n_copies, 1, 1)
        return resid_pre + patched_copies(suffix(receiving, name), suffix(source, name), chosen,
                                          n_prompts)
    if site == "mlp_out":  # resid_post = resid_mid + mlp_out
        resid_mid = suffix(receiving, hook_name("resid_mid", layer)).repeat(n_copies, 1, 1)
        return resid_mid + patched_copies(suffix(receiving, name), suffix(source, name), chosen,
                                          n_prompts)
    return suffix(receiving, hook_name("resid_pre", layer)).repeat(n_copies, 1, 1)


class PrefixKeysValues:
    """Keys and values of positions before `first`, taken from the receiving run.

    Handed to the blocks as `past_key_values`: the bridge's attention appends the keys and
    values it computes for positions >= first to these, exactly as in cached generation.
    """

    def __init__(self, receiving: dict, first: int, n_prompts: int):
        self.receiving, self.first, self.n_prompts = receiving, first, n_prompts

    def prefix(self, site: str, layer: int, rows: int) -> torch.Tensor:
        cached = self.receiving[hook_name(site, layer)][:, :self.first]  # [prompt, pos, head, d]
        return cached.transpose(1, 2).repeat(rows // self.n_prompts, 1, 1, 1)

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int):
        rows = keys.shape[0]
        return (torch.cat([self.prefix("k", layer_idx, rows), keys], dim=2),
                torch.cat([self.prefix("v", layer_idx, rows), values], dim=2))


def staircase_scores(model, patches: Sequence[Patch], receiving: dict, source: dict,
                     n_prompts: int, score, positions_per_group: int = 1) -> torch.Tensor:
    """Metric [patch, prompt] of these patches, in as few passes down the blocks as possible.

    Patches whose first changed positions fall in the same group of `positions_per_group` share
    a pass that computes only the positions from the group's first one, reading earlier
    positions' keys and values from the receiving run (under causal attention nothing before a
    patched position changes).
    """
    by_first: dict[int, list[int]] = {}
    for i, p in enumerate(patches):
        first = p.first_position // positions_per_group * positions_per_group
        by_first.setdefault(first, []).append(i)
    scores = torch.empty(len(patches), n_prompts)
    for first, members in by_first.items():
        scores[torch.tensor(members)] = staircase_pass(
            model, [patches[i] for i in members], receiving, source, n_prompts, score, first).cpu()
    return scores


@torch.no_grad()
def staircase_pass(model, patches: Sequence[Patch], receiving: dict, source: dict,
                   n_prompts: int, score, first: int) -> torch.Tensor:
    """Metric [patch, prompt] of these patches (all first changing position `first`), one pass.

    Runs join the batch at the block where they start, so the batch grows with depth ("a
    staircase") and every block runs once for all patches that have reached it. Head sites are
    patched by a hook on the rows that joined at that block.
    """
    n_layers = model.info.n_layers
    by_entry: dict[tuple[int, bool], list[Patch]] = {}
    for p in patches:
        by_entry.setdefault(p.entry, []).append(p)
    row_order: list[Patch] = []
    hidden: torch.Tensor | None = None
    joined_at: dict[int, int] = {}  # layer -> first row of the runs that joined there
    hooks = []
    head_patches = [p for p in patches if p.site in HEAD_SITES]
    for layer in sorted({p.layer for p in head_patches}):
        at_layer = [p for p in head_patches if p.layer == layer]
        hooks.append((hook_name(at_layer[0].site, layer),
                      head_patch_hook(at_layer, source, n_prompts, joined_at, layer, first)))
    block_kwargs = ({"past_key_values": PrefixKeysValues(receiving, first, n_prompts)}
                    if first > 0 else {})

    def join(current, entering: list[Patch], last_position_only: bool = False):
        start = starting_residual(entering, receiving, source, n_prompts, first)
        if last_position_only:  # after the last block, as last_block_at_last_position leaves it
            start = start[:, -1:]
        row_order.extend(entering)
        return start if current is None else torch.cat([current, start])

    first_block = min(entry[0] for entry in by_entry)
    with model.hooked(hooks) as bridge:
        for block_index in range(first_block, n_layers):
            block = bridge.blocks[block_index]
            entering = by_entry.get((block_index, False))
            if entering:
                joined_at[block_index] = 0 if hidden is None else hidden.shape[0]
                hidden = join(hidden, entering)
            last_block = block_index == n_layers - 1
            if hidden is not None and last_block:
                hidden = last_block_at_last_position(block, hidden, block_kwargs)
            elif hidden is not None:
                output = block(hidden, **block_kwargs)
                hidden = output[0] if isinstance(output, tuple) else output
            entering_mid = by_entry.get((block_index, True))
            if entering_mid:
                mid = starting_residual(entering_mid, receiving, source, n_prompts, first)
                row_order.extend(entering_mid)
                if last_block:
                    mid = mid[:, -1:]
                post = mid + block.mlp(block.ln2(mid))
                hidden = post if hidden is None else torch.cat([hidden, post])
        after_last = by_entry.get((n_layers, False))
        if after_last:
            hidden = join(hidden, after_last, last_position_only=True)
        scores = score(hidden[:, -1])
    position = {id(p): i for i, p in enumerate(row_order)}
    return scores[torch.tensor([position[id(p)] for p in patches])]


def last_block_at_last_position(block, hidden: torch.Tensor, block_kwargs: dict) -> torch.Tensor:
    """The last block's output at the last position only [rows, 1, d], which is all the metric
    reads: attention runs over every position (its keys and values need them), the MLP only on
    the last one. Same arithmetic as the block: resid_mid = attn_out + resid_pre, then
    resid_post = resid_mid + mlp(ln2(resid_mid)).
    """
    attention = block.attn(block.ln1(hidden), **block_kwargs)
    attn_out = attention[0] if isinstance(attention, tuple) else attention
    mid = attn_out[:, -1:] + hidden[:, -1:]
    return mid + block.mlp(block.ln2(mid))


def head_patch_hook(patches: Sequence[Patch], source: dict, n_prompts: int,
                    joined_at: dict[int, int], layer: int, first: int):
    """A hook patching, in the rows that joined at `layer`, each run's head slice from `source`."""
    site = patches[0].site
    name = hook_name(site, layer)
    chosen = [shifted(site, p.index, first) for p in patches]
    source_part = position_slice(site, source[name], first)

    def patch_rows(activation, hook):
        joined = joined_at[layer]
        patched = patched_copies(activation[joined:], source_part, chosen, n_prompts)
        return torch.cat([activation[:joined], patched]) if joined else patched
    return patch_rows


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


# ---------------------------------------------------------------------------------------------
# Path patching


def check_receivers(receivers, receiver_input: str, n_layers: int, n_heads: int) -> tuple:
    if isinstance(receivers, str):
        if receivers != FINAL_RESIDUAL:
            raise InvalidOptionError(
                f"Unknown receivers {receivers!r}: give a list of (layer, head) pairs or "
                f"{FINAL_RESIDUAL!r} for the final residual stream.")
        return FINAL_RESIDUAL
    if receiver_input not in RECEIVER_INPUTS:
        raise invalid_choice("receiver input", receiver_input, RECEIVER_INPUTS)
    try:
        pairs = tuple(sorted({(int(layer), int(head)) for layer, head in receivers}))
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(
            "Receivers must be (layer, head) pairs, e.g. [(9, 6), (9, 9)], or "
            f"{FINAL_RESIDUAL!r}.") from error
    if not pairs:
        raise InvalidOptionError(f"Choose at least one receiver head, or {FINAL_RESIDUAL!r}.")
    outside = [p for p in pairs if not (0 <= p[0] < n_layers and 0 <= p[1] < n_heads)]
    if outside:
        raise InvalidOptionError(
            f"Receiver heads {outside} don't exist: layers go from 0 to {n_layers - 1} and "
            f"heads from 0 to {n_heads - 1}.")
    return pairs


def patch_path(model, inputs: PatchingInputs, metric: PatchingMetric, receivers,
               receiver_input: str = "q", direction: str = "denoising",
               batch_size: int | None = None,
               progress: ProgressCallback | None = None) -> PatchingResult:
    """Path patching (Wang et al. 2022): each sender head's effect through the receivers only.

    For every sender head (layer, head) its output z is patched (from the clean run when
    denoising), every other head's output is frozen at its value in the run patched into, MLPs
    are recomputed, and the effect is allowed to reach the metric only through `receivers`:
    either a list of (layer, head) whose `receiver_input` (q, k or v) is recomputed and patched
    into a fresh run, or "resid_final" for the final residual stream (the logits). Values are
    [layer, head] over senders; a sender at or after the last receiver's layer can't reach any
    receiver and gets NaN (values and normalized).
    """
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    check_batch_size(batch_size)
    check_block_layout(model)
    info = model.info
    n_layers, n_heads, n_pos, n_prompts = info.n_layers, info.n_heads, inputs.n_positions, inputs.n_prompts
    chosen_receivers = check_receivers(receivers, receiver_input, n_layers, n_heads)
    to_final = chosen_receivers == FINAL_RESIDUAL
    last_receiver_layer = n_layers if to_final else max(layer for layer, _ in chosen_receivers)
    sequences = tokens_per_pass(batch_size, n_pos)
    senders_per_pass = max(1, sequences // n_prompts)
    values = torch.full((n_layers, n_heads), float("nan"))
    names = [hook_name("resid_pre", layer) for layer in range(n_layers)]
    names += [hook_name("z", layer) for layer in range(n_layers)]

    runs = baseline_runs(model, inputs, metric, names)
    receiving, source = ((runs.corrupted_cache, runs.clean_cache) if direction == "denoising"
                         else (runs.clean_cache, runs.corrupted_cache))
    score = make_scorer(model, metric, runs.clean_log_probs)
    sender_chunks = [(layer, heads) for layer in range(min(last_receiver_layer, n_layers))
                     for heads in chunks(list(range(n_heads)), senders_per_pass)]
    total = sum(len(heads) for _, heads in sender_chunks)
    done = 0
    for layer, heads in sender_chunks:
        if to_final:
            scores = path_to_final(model, layer, heads, receiving, source, n_prompts, score)
        else:
            scores = path_to_heads(model, layer, heads, chosen_receivers, receiver_input,
                                   receiving, source, n_prompts, score)
        values[layer, heads[0]:heads[-1] + 1] = scores.mean(dim=1)
        done += len(heads)
        if progress is not None:
            progress(done, total)

    options = run_options(inputs, sequences)
    options.update(kind="path", receivers=(FINAL_RESIDUAL if to_final else
                                           [list(pair) for pair in chosen_receivers]),
                   receiver_input=None if to_final else receiver_input,
                   frozen="all other heads' outputs (z); MLPs recomputed")
    return PatchingResult(
        model_name=info.name, method="exact", site="z", granularity="head", direction=direction,
        metric_name=metric.name, values=values,
        normalized=normalize(values, runs.clean_value, runs.corrupted_value),
        clean_value=runs.clean_value, corrupted_value=runs.corrupted_value,
        tokens=tuple(model.display_tokens(inputs.clean_tokens[0].tolist())),
        n_prompts=n_prompts, options=options)


def frozen_heads_hooks(sender_layer: int, heads: Sequence[int], up_to_layer: int,
                       receiving: dict, source: dict, n_prompts: int) -> list:
    """Hooks setting every head's z to the receiving run's, but each sender's from `source`."""
    hooks = []
    for layer in range(sender_layer, up_to_layer):
        name = hook_name("z", layer)
        frozen = receiving[name].repeat(len(heads), 1, 1, 1)
        if layer == sender_layer:
            frozen = patched_copies(frozen, source[name], [(slice(None), h) for h in heads],
                                    n_prompts)
        hooks.append((name, lambda activation, hook, frozen=frozen: frozen))
    return hooks


@torch.no_grad()
def path_to_final(model, sender_layer: int, heads: Sequence[int], receiving: dict, source: dict,
                  n_prompts: int, score) -> torch.Tensor:
    n_layers = model.info.n_layers
    hooks = frozen_heads_hooks(sender_layer, heads, n_layers, receiving, source, n_prompts)
    hidden = receiving[hook_name("resid_pre", sender_layer)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        hidden = run_block_range(bridge, hidden, sender_layer, n_layers)
        return score(hidden[:, -1])


@torch.no_grad()
def path_to_heads(model, sender_layer: int, heads: Sequence[int], receivers: tuple,
                  receiver_input: str, receiving: dict, source: dict, n_prompts: int,
                  score) -> torch.Tensor:
    """Two passes: senders patched and other heads frozen to get the receivers' inputs, then a
    fresh receiving run with only those receiver inputs patched in."""
    n_layers = model.info.n_layers
    reachable = [(layer, head) for layer, head in receivers if layer > sender_layer]
    receiver_layers = sorted({layer for layer, _ in reachable})
    captured: dict[int, torch.Tensor] = {}

    def capture(activation, hook):
        captured[int(hook.name.split(".")[1])] = activation
    hooks = frozen_heads_hooks(sender_layer, heads, receiver_layers[-1] + 1, receiving, source,
                               n_prompts)
    hooks += [(hook_name(receiver_input, layer), capture) for layer in receiver_layers]
    hidden = receiving[hook_name("resid_pre", sender_layer)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        run_block_range(bridge, hidden, sender_layer, receiver_layers[-1] + 1)

    def patch_receivers(activation, hook):
        layer = int(hook.name.split(".")[1])
        patched = activation.clone()
        for receiver_layer, head in reachable:
            if receiver_layer == layer:
                patched[:, :, head] = captured[layer][:, :, head]
        return patched
    hooks = [(hook_name(receiver_input, layer), patch_receivers) for layer in receiver_layers]
    first = receiver_layers[0]
    hidden = receiving[hook_name("resid_pre", first)].repeat(len(heads), 1, 1)
    with model.hooked(hooks) as bridge:
        hidden = run_block_range(bridge, hidden, first, n_layers)
        return score(hidden[:, -1])


def run_block_range(bridge, hidden: torch.Tensor, first: int, stop: int) -> torch.Tensor:
    """The residual after blocks first..stop-1, from `hidden` entering block `first`."""
    for block in bridge.blocks[first:stop]:
        output = block(hidden)
        hidden = output[0] if isinstance(output, tuple) else output
    return hidden


# ---------------------------------------------------------------------------------------------
# Attribution patching


def attribution_patch(model, inputs: PatchingInputs, metric: PatchingMetric,
                      site: str = "resid_pre", granularity: str = "layer_pos",
                      direction: str = "denoising") -> PatchingResult:
    """Attribution patching (Nanda 2023): a first-order estimate of every patch at once.

    Denoising: values = corrupted_value + (clean_act - corrupted_act) . d metric / d act, the
    gradient taken in the corrupted run (noising swaps the runs). One clean run, one corrupted
    run with a backward pass, whatever the number of components. It is exact for a metric linear
    in the activation and drifts where attention patterns or layer norms move a lot.
    """
    check_site(site, granularity)
    check_direction(direction)
    check_metric_for(metric, inputs, model)
    info = model.info
    n_layers, n_heads, n_pos = info.n_layers, info.n_heads, inputs.n_positions
    site_names = [hook_name(site, layer) for layer in range(n_layers)]
    # hook_resid_mid sits on ln2's input; the residual branch's gradient arrives at resid_post.
    extra_grad_names = ([hook_name("resid_post", layer) for layer in range(n_layers)]
                        if site == "resid_mid" else [])

    runs = baseline_runs(model, inputs, metric, site_names)
    if direction == "denoising":
        receiving, source = runs.corrupted_cache, runs.clean_cache
        tokens, extra_hooks = corrupted_run_tokens(inputs), runs.noise_hooks
        receiving_value = runs.corrupted_value
    else:
        receiving, source = runs.clean_cache, runs.corrupted_cache
        tokens, extra_hooks, receiving_value = inputs.clean_tokens, (), runs.clean_value
    gradients = metric_gradients(model, tokens, metric, runs.clean_log_probs,
                                 site_names + extra_grad_names, extra_hooks)

    per_layer = []
    for layer, name in enumerate(site_names):
        gradient = gradients[name]
        if extra_grad_names:
            gradient = gradient + gradients[extra_grad_names[layer]]
        contribution = (source[name] - receiving[name]) * gradient
        per_layer.append(reduce_contribution(contribution, site, granularity))
    values = receiving_value + torch.stack(per_layer)
    values = values.view(result_shape(granularity, n_layers, n_heads, n_pos))
    options = run_options(inputs, inputs.n_prompts)
    options["approximation"] = ("first order: (source - receiving activation) x gradient of the "
                                "metric in the receiving run")
    return PatchingResult(
        model_name=info.name, method="attribution", site=site, granularity=granularity,
        direction=direction, metric_name=metric.name, values=values,
        normalized=normalize(values, runs.clean_value, runs.corrupted_value),
        clean_value=runs.clean_value, corrupted_value=runs.corrupted_value,
        tokens=tuple(model.display_tokens(inputs.clean_tokens[0].tolist())),
        n_prompts=inputs.n_prompts, options=options)


def metric_gradients(model, tokens: torch.Tensor, metric: PatchingMetric,
                     clean_log_probs: torch.Tensor, names: Sequence[str], extra_hooks=()) -> dict:
    """d (mean metric) / d activation at each hook in `names`, in one forward and one backward."""
    activations: dict[str, torch.Tensor] = {}

    def track_from_here(residual, hook):
        # Parameters are frozen, so the graph starts at the first residual stream.
        return residual.detach().requires_grad_(True)

    def keep(activation, hook):
        # Returned, not just stored: some hooks (hook_z, hook_q, ...) see a reshaped copy that
        # only joins the graph when it is handed back. A copy for ln2's input (hook_resid_mid)
        # keeps its gradient to the MLP branch; the residual branch's comes from resid_post.
        if hook.name.endswith("ln2.hook_in"):
            activation = activation.clone()
        activations[hook.name] = activation
        return activation

    canonical = {name: canonical_hook_name(model, name) for name in names}
    hooks = list(extra_hooks) + [(hook_name("resid_pre", 0), track_from_here)]
    hooks += [(name, keep) for name in dict.fromkeys(names)]
    with torch.enable_grad(), model.hooked(hooks) as bridge:
        logits = bridge(tokens.to(model.info.device))[:, -1]
        value = metric_from_logits(metric, logits, clean_log_probs).mean()
        wanted = list(dict.fromkeys(canonical.values()))
        grads = torch.autograd.grad(value, [activations[c] for c in wanted], allow_unused=True)
    by_canonical = {c: (g if g is not None else torch.zeros_like(activations[c])).detach()
                    for c, g in zip(wanted, grads, strict=True)}
    return {name: by_canonical[canonical[name]] for name in names}


def reduce_contribution(contribution: torch.Tensor, site: str, granularity: str) -> torch.Tensor:
    """Sum a per-element contribution over prompts and the axes a component spans."""
    total = contribution.sum(dim=0)
    if site in RESIDUAL_SITES:  # [pos, d_model]
        per_position = total.sum(-1)
        return per_position if granularity == "layer_pos" else per_position.sum()
    if site == "pattern":  # [head, dest, src]
        per_destination = total.sum(-1)
        return per_destination if granularity == "head_pos" else per_destination.sum(-1)
    per_head_position = total.sum(-1).T  # [pos, head, d_head] -> [head, pos]
    return per_head_position if granularity == "head_pos" else per_head_position.sum(-1)


# ---------------------------------------------------------------------------------------------
# Comparing methods, and the two runs' predictions


def compare_methods(exact: PatchingResult, approx: PatchingResult, k: int = 5) -> MethodAgreement:
    """Correlation of two results over the same components, and the k that disagree most."""
    if (exact.site, exact.granularity) != (approx.site, approx.granularity) or \
            exact.values.shape != approx.values.shape:
        raise InvalidOptionError(
            f"Can't compare {exact.site}/{exact.granularity} {tuple(exact.values.shape)} with "
            f"{approx.site}/{approx.granularity} {tuple(approx.values.shape)}: run both methods "
            "on the same site, granularity and prompts.")
    a, b = exact.normalized.flatten().double(), approx.normalized.flatten().double()
    finite = torch.isfinite(a) & torch.isfinite(b)
    a_finite, b_finite = a[finite], b[finite]
    gap = (a - b).abs()
    gap[~finite] = -1.0
    order = torch.argsort(gap, descending=True, stable=True)[:k]
    worst = []
    for flat_index in order.tolist():
        if gap[flat_index] < 0:
            break
        index = [int(i) for i in torch.unravel_index(torch.tensor(flat_index), exact.values.shape)]
        worst.append((exact.label(index), float(a[flat_index]), float(b[flat_index])))
    return MethodAgreement(pearson=pearson(a_finite, b_finite),
                           spearman=pearson(average_ranks(a_finite), average_ranks(b_finite)),
                           worst=worst)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant or has fewer than two values."""
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties sharing their average rank (as Spearman's correlation needs)."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    sorted_values = values[order]
    start = 0
    n = values.numel()
    while start < n:
        end = start
        while end + 1 < n and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def clean_and_corrupted_logits(model, inputs: PatchingInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-position logits [n_prompts, d_vocab] of the clean run and of the corrupted run."""
    clean_logits, _ = cached_run(model, inputs.clean_tokens, ())
    noise_hooks = (noise_hook(model, inputs),) if inputs.noise is not None else ()
    corrupted_logits, _ = cached_run(model, corrupted_run_tokens(inputs), (),
                                     extra_hooks=noise_hooks)
    return clean_logits, corrupted_logits
