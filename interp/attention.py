"""Attention: where each head looks, how attention composes across layers, and what kind of head
each one is.

`attention_patterns` records every head's softmax pattern (query x key, rows sum to 1) in one
forward pass; raw weights often pile onto the first token while moving almost nothing, so it can
also weight each one by the size of what it moves, ||alpha_ij f(x_j)|| with f the head's value
vector times W_O (Kobayashi et al. 2020). Attention rollout (Abnar & Zuidema 2020) multiplies
the head-averaged patterns layer by layer, with the residual stream added as an identity, to
estimate how much each input token can reach each position; attention flow treats the same
graph as a flow network and takes the max-flow instead. `head_scores` measures, for every head,
how much it attends to the previous token, to an earlier copy of the current token (duplicate
token), to the token after that copy (induction), and to the first token (sink), and how spread
out it is (entropy), on a seeded repeated random-token sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from interp.errors import InputTooLongError, InvalidOptionError, invalid_choice
from interp.validation import check_prompt

Progress = Callable[[float, str], None]

WEIGHTINGS = ("attention", "value_norm")
WEIGHTING_LABELS = {"attention": "Attention weights (softmax)",
                    "value_norm": "Value-weighted norms ||α f(x)||"}
HEAD_FUSIONS = ("mean", "max", "min")
SCORE_KINDS = ("previous_token", "duplicate_token", "induction", "sink", "entropy")
SCORE_LABELS = {"previous_token": "previous token", "duplicate_token": "duplicate token",
                "induction": "induction", "sink": "sink (first token)",
                "entropy": "mean entropy (nats)"}
# Entropy is the one score where a *low* value marks a special (focused) head.
LOW_IS_NOTABLE = frozenset({"entropy"})
SCORE_MEANING = {
    "previous_token": "mean attention from each token to the token just before it",
    "duplicate_token": "mean attention from a repeated token to its earlier copy",
    "induction": "mean attention from a repeated token to the token that followed its earlier "
                 "copy (the pattern of an induction head: A B ... A -> look at B)",
    "sink": "mean attention to the first token (often a resting place: large weight, little moved)",
    "entropy": "mean entropy of the attention rows in nats (0 = one token; log(n) = uniform)",
}
DEFAULT_REPEAT_LENGTH = 24
MIN_REPEAT_LENGTH = 2
DEFAULT_SEED = 0
MAX_FLOW_TOKENS = 32
RESIDUAL_WEIGHT = 0.5

ROLLOUT_MEANING = (
    "Attention rollout multiplies each layer's head-averaged attention, with the residual stream "
    "added as an identity (0.5 A + 0.5 I, rows renormalized), from the first layer up. A cell "
    "estimates how much of position q's representation at that layer can be traced back to input "
    "token k through attention alone. It ignores what the values carry (a large weight can move "
    "nothing), the MLPs, layer norms and how heads differ, so read it as a rough map of where "
    "information *can* flow, not as an attribution of the output.")
FLOW_MEANING = (
    "Attention flow treats the same layered graph (residual identity included) as a flow network "
    "whose edge capacities are the attention weights, and takes the max-flow from input token k "
    "to position q at the last layer. It spreads credit more evenly than rollout and is bounded "
    "by the narrowest layer; like rollout it knows nothing about values, MLPs or the output, and "
    "it costs one max-flow per cell, so it is computed for short inputs only.")


@dataclass(frozen=True)
class AttentionResult:
    """Every head's attention on one prompt, from one forward pass (tensors on the CPU).

    `patterns` [layer, head, query, key]: softmax probabilities (each row sums to 1; keys after
    the query are 0). `value_norms` [layer, head, query, key] when asked for: alpha_ij times
    ||f(x_j)||, f(x_j) = (x_j W_V + b_V) W_O of that head, the size of what each weight moves.
    """

    model_name: str
    model_label: str
    prompt: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    patterns: torch.Tensor
    value_norms: torch.Tensor | None = None

    @property
    def n_layers(self) -> int:
        return self.patterns.shape[0]

    @property
    def n_heads(self) -> int:
        return self.patterns.shape[1]

    @property
    def n_tokens(self) -> int:
        return self.patterns.shape[-1]

    def weights(self, weighting: str = "attention") -> torch.Tensor:
        """The patterns, or the value-weighted norms ("value_norm"), [layer, head, query, key]."""
        if weighting not in WEIGHTINGS:
            raise invalid_choice("weighting", weighting, WEIGHTINGS)
        if weighting == "value_norm":
            if self.value_norms is None:
                raise InvalidOptionError(
                    "This result has no value-weighted norms: compute it with "
                    "attention_patterns(..., value_norms=True).")
            return self.value_norms
        return self.patterns

    def check_head(self, layer: int, head: int | None = None) -> None:
        if not 0 <= layer < self.n_layers:
            raise InvalidOptionError(
                f"{self.model_label} has layers 0 to {self.n_layers - 1}; there is no layer {layer}.")
        if head is not None and not 0 <= head < self.n_heads:
            raise InvalidOptionError(
                f"{self.model_label} has heads 0 to {self.n_heads - 1}; there is no head {head}.")

    def check_position(self, position: int) -> None:
        if not 0 <= position < self.n_tokens:
            raise InvalidOptionError(
                f"Choose a token position from 0 to {self.n_tokens - 1}, not {position}.")


@dataclass(frozen=True)
class AttentionGraphResult:
    """What rollout and flow share: the layered attention graph they were computed on (each
    layer's heads fused by `head_fusion`, the residual identity added with `residual_weight`)."""

    model_name: str
    model_label: str
    tokens: tuple[str, ...]
    residual_weight: float
    head_fusion: str


@dataclass(frozen=True)
class RolloutResult(AttentionGraphResult):
    """Attention rollout [layer, query, key]: row q of layer l is how much of position q after
    layer l traces back to each input token (each row sums to 1)."""

    rollout: torch.Tensor = None  # type: ignore[assignment]  # always given; a default only for field order
    meaning: str = ROLLOUT_MEANING


@dataclass(frozen=True)
class FlowResult(AttentionGraphResult):
    """Attention flow [query, key]: the max-flow from input token k to position q at the last
    layer, through the residual-augmented attention graph of every layer."""

    flow: torch.Tensor = None  # type: ignore[assignment]  # always given; a default only for field order
    meaning: str = FLOW_MEANING


@dataclass(frozen=True)
class HeadScores:
    """Per-head scores [layer, head] by kind (`SCORE_KINDS`), with where each was measured.

    Duplicate-token and induction scores come from `sequence_ids`, a BOS token followed by
    `repeat_length` distinct random tokens (seeded by `seed`) written twice; previous-token,
    sink and entropy come from the same sequence, or from the user's prompt when `sources` says so.
    """

    model_name: str
    model_label: str
    scores: Mapping[str, torch.Tensor]
    sources: Mapping[str, str]
    repeat_length: int
    seed: int
    sequence_ids: tuple[int, ...]
    meaning: Mapping[str, str] = field(default_factory=lambda: dict(SCORE_MEANING))

    @property
    def n_layers(self) -> int:
        return next(iter(self.scores.values())).shape[0]

    @property
    def n_heads(self) -> int:
        return next(iter(self.scores.values())).shape[1]

    def of(self, kind: str) -> torch.Tensor:
        if kind not in self.scores:
            raise invalid_choice("head-score kind", kind, tuple(self.scores))
        return self.scores[kind]


@dataclass(frozen=True)
class FoundHead:
    layer: int
    head: int
    score: float

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)


def head_label(layer: int, head: int) -> str:
    """A head's label, e.g. "L3H1"."""
    return f"L{layer}H{head}"


def pattern_hook_name(layer: int) -> str:
    """The hook name of layer `layer`'s attention pattern."""
    return f"blocks.{layer}.attn.hook_pattern"


def value_hook_name(layer: int) -> str:
    """The hook name of layer `layer`'s value vectors."""
    return f"blocks.{layer}.attn.hook_v"


def recorded_patterns(model, tokens: torch.Tensor, with_values: bool = False):
    """One forward pass of `tokens` [batch, pos], recording every layer's pattern [batch, head,
    q, k] (and value vectors [batch, pos, head, d_head]); hooks exist only inside `hooked()`."""
    n_layers = model.info.n_layers
    recorded: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        # Keyed by the name asked for: the bridge reports an alias's real name (attn.v.hook_out).
        def record(activation, hook):
            recorded[name] = activation.detach()
            return activation
        return record

    names = [pattern_hook_name(layer) for layer in range(n_layers)]
    if with_values:
        names += [value_hook_name(layer) for layer in range(n_layers)]
    with torch.no_grad(), model.hooked([(name, recorder(name)) for name in names]) as bridge:
        bridge(tokens.to(model.device))
        w_o = bridge.W_O.detach() if with_values else None  # [layer, head, d_head, d_model]
    patterns = torch.stack([recorded[pattern_hook_name(layer)] for layer in range(n_layers)], 1)
    if not with_values:
        return patterns, None
    values = torch.stack([recorded[value_hook_name(layer)] for layer in range(n_layers)], 1)
    return patterns, (values, w_o)


def moved_norms(values: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """||f(x_j)|| = ||v_j W_O^h|| per [layer, head, key] from values [layer, key, head, d_head]."""
    moved = torch.einsum("lkhd,lhdm->lhkm", values.to(w_o.dtype), w_o)
    return moved.norm(dim=-1)


def attention_patterns(model, prompt: str, value_norms: bool = False,
                       progress: Progress | None = None) -> AttentionResult:
    """Every head's attention pattern on `prompt` (BOS first), from one forward pass under the
    model's lock; with `value_norms`, also each weight times the norm of what it moves."""
    checked = check_prompt(prompt, model)
    if progress:
        progress(0.0, "Running the model once ...")
    patterns, values = recorded_patterns(model, checked.as_tensor(), with_values=value_norms)
    norms = None
    if values is not None:
        value_vectors, w_o = values
        norms = (patterns[0] * moved_norms(value_vectors[0], w_o)[:, :, None, :]).float().cpu()
    if progress:
        progress(1.0, "Done")
    return AttentionResult(model_name=model.name, model_label=model.info.label, prompt=prompt,
                           tokens=checked.tokens, token_ids=checked.token_ids,
                           patterns=patterns[0].float().cpu(), value_norms=norms)


def fused_layers(result: AttentionResult, head_fusion: str, residual_weight: float,
                 weighting: str = "attention") -> torch.Tensor:
    """Each layer's heads fused into one matrix, the residual identity added, rows renormalized:
    [layer, query, key] with (1 - w) A + w I."""
    if head_fusion not in HEAD_FUSIONS:
        raise invalid_choice("head fusion", head_fusion, HEAD_FUSIONS)
    if not 0.0 <= residual_weight <= 1.0:
        raise InvalidOptionError(
            f"The residual weight is a share from 0 to 1, not {residual_weight}.")
    weights = result.weights(weighting).double()
    fused = {"mean": lambda w: w.mean(1), "max": lambda w: w.amax(1),
             "min": lambda w: w.amin(1)}[head_fusion](weights)
    identity = torch.eye(result.n_tokens, dtype=fused.dtype)
    augmented = (1.0 - residual_weight) * fused + residual_weight * identity
    return augmented / augmented.sum(-1, keepdim=True)


def attention_rollout(result: AttentionResult, residual_weight: float = RESIDUAL_WEIGHT,
                      head_fusion: str = "mean", weighting: str = "attention") -> RolloutResult:
    """Attention rollout (Abnar & Zuidema 2020): R_0 = Â_0, R_l = Â_l R_{l-1}, with Â_l the
    layer's fused heads plus the residual identity, rows renormalized. See ROLLOUT_MEANING."""
    layers = fused_layers(result, head_fusion, residual_weight, weighting)
    rolled, current = [], torch.eye(result.n_tokens, dtype=layers.dtype)
    for layer in layers:
        current = layer @ current
        rolled.append(current)
    return RolloutResult(model_name=result.model_name, model_label=result.model_label,
                         tokens=result.tokens, rollout=torch.stack(rolled).float(),
                         residual_weight=residual_weight, head_fusion=head_fusion)


FLOW_SCALE = 1e9  # max-flow runs on integers: capacities (at most 1) in units of 1e-9


def attention_flow(result: AttentionResult, residual_weight: float = RESIDUAL_WEIGHT,
                   head_fusion: str = "mean", max_tokens: int = MAX_FLOW_TOKENS,
                   progress: Progress | None = None) -> FlowResult:
    """Attention flow (Abnar & Zuidema 2020): max-flow from each input token to each position at
    the last layer, edge capacities the residual-augmented attention of each layer. Inputs
    longer than `max_tokens` raise `InputTooLongError` (one max-flow per cell)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n = result.n_tokens
    if n > max_tokens:
        raise InputTooLongError(
            f"Attention flow runs one max-flow per (query, key) pair, so it is computed for "
            f"inputs of at most {max_tokens} tokens; this one has {n}. Shorten the prompt, or "
            "use attention rollout, which has no limit.")
    layers = fused_layers(result, head_fusion, residual_weight).numpy()
    # Node depth * n + position; an edge from (depth, key) up to (depth + 1, query).
    depth, query, key = np.nonzero(layers > 0)
    capacity = np.rint(layers[depth, query, key] * FLOW_SCALE).astype(np.int32)
    size = (len(layers) + 1) * n
    graph = csr_matrix((capacity, (depth * n + key, (depth + 1) * n + query)), shape=(size, size))
    top = len(layers) * n
    flow = torch.zeros(n, n, dtype=torch.float64)
    for q in range(n):
        for k in range(q + 1):
            flow[q, k] = maximum_flow(graph, k, top + q, method="dinic").flow_value / FLOW_SCALE
        if progress:
            progress((q + 1) / n, f"Max-flow for position {q + 1} of {n}")
    return FlowResult(model_name=result.model_name, model_label=result.model_label,
                      tokens=result.tokens, flow=flow.float(), residual_weight=residual_weight,
                      head_fusion=head_fusion)


def repeated_random_tokens(model, repeat_length: int, seed: int) -> torch.Tensor:
    """[1, 2 * repeat_length + 1]: BOS, then `repeat_length` distinct random non-special tokens,
    then the same tokens again (seeded, so a score can be reproduced)."""
    n_ctx, longest = model.info.n_ctx, longest_repeat(model)
    if not MIN_REPEAT_LENGTH <= repeat_length <= longest:
        raise InvalidOptionError(
            f"The repeated sequence length must be from {MIN_REPEAT_LENGTH} to {longest} tokens "
            f"for {model.info.label} (written twice after BOS, it must fit its context of "
            f"{n_ctx}); got {repeat_length}.")
    bos = model.to_tokens("", prepend_bos=True)[0].tolist()
    special = set(getattr(model.tokenizer, "all_special_ids", []) or []) | set(bos)
    generator = torch.Generator().manual_seed(int(seed))
    candidates = [t for t in torch.randperm(model.info.d_vocab, generator=generator).tolist()
                  if t not in special and t < len(model.tokenizer)]
    chosen = candidates[:repeat_length]
    return torch.tensor([bos[:1] + chosen + chosen])


def mean_entropy(patterns: torch.Tensor) -> torch.Tensor:
    """Mean row entropy in nats [layer, head] of patterns [layer, head, q, k], rows q >= 1 (the
    first row has one key and always entropy 0)."""
    logs = torch.where(patterns > 0, patterns.clamp_min(1e-30).log(), torch.zeros_like(patterns))
    entropy = -(patterns * logs).sum(-1)
    return entropy[..., 1:].mean(-1)


def offset_score(patterns: torch.Tensor, queries: torch.Tensor, offset: int) -> torch.Tensor:
    """Mean attention [layer, head] from each query position q to key q - offset."""
    return patterns[..., queries, queries - offset].mean(-1)


def prompt_style_scores(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """Previous-token, sink and entropy scores [layer, head] of patterns [layer, head, q, k]."""
    queries = torch.arange(1, patterns.shape[-1])
    return {"previous_token": offset_score(patterns, queries, 1),
            "sink": patterns[..., 1:, 0].mean(-1),
            "entropy": mean_entropy(patterns)}


def head_scores(model, repeat_length: int = DEFAULT_REPEAT_LENGTH, seed: int = DEFAULT_SEED,
                prompt_result: AttentionResult | None = None,
                progress: Progress | None = None) -> HeadScores:
    """Every head's previous-token, duplicate-token, induction, sink and entropy scores.

    One forward pass on a seeded repeated random-token sequence (see `HeadScores`); with
    `prompt_result`, previous-token, sink and entropy are read from the prompt's patterns
    instead, at no extra cost.
    """
    if progress:
        progress(0.0, "Running the repeated random-token sequence ...")
    sequence = repeated_random_tokens(model, int(repeat_length), seed)
    patterns, _ = recorded_patterns(model, sequence)
    patterns = patterns[0].float().cpu()
    second_half = torch.arange(repeat_length + 1, 2 * repeat_length + 1)
    scores = {"duplicate_token": offset_score(patterns, second_half, repeat_length),
              "induction": offset_score(patterns, second_half, repeat_length - 1)}
    described = f"repeated random tokens ({repeat_length} tokens twice, seed {seed})"
    sources = dict.fromkeys(scores, described)
    if prompt_result is not None and prompt_result.model_name == model.name:
        from_prompt, where = prompt_style_scores(prompt_result.patterns), "the prompt"
    else:
        from_prompt, where = prompt_style_scores(patterns), described
    scores.update(from_prompt)
    sources.update(dict.fromkeys(from_prompt, where))
    if progress:
        progress(1.0, "Done")
    return HeadScores(model_name=model.name, model_label=model.info.label,
                      scores={kind: scores[kind] for kind in SCORE_KINDS},
                      sources={kind: sources[kind] for kind in SCORE_KINDS},
                      repeat_length=int(repeat_length), seed=int(seed),
                      sequence_ids=tuple(sequence[0].tolist()))


def passes(kind: str, value: float, threshold: float) -> bool:
    """Whether a `kind` score passes `threshold` (at most it for the scores where low is notable, else at least it)."""
    return value <= threshold if kind in LOW_IS_NOTABLE else value >= threshold


def find_heads(scores: HeadScores, kind: str, threshold: float) -> list[FoundHead]:
    """Heads whose `kind` score passes `threshold` (at least it; at most it for entropy), most
    notable first."""
    matrix = scores.of(kind)
    if math.isnan(threshold):
        raise InvalidOptionError("The threshold must be a number, not NaN.")
    found = [FoundHead(layer, head, float(matrix[layer, head]))
             for layer in range(matrix.shape[0]) for head in range(matrix.shape[1])
             if passes(kind, float(matrix[layer, head]), threshold)]
    return sorted(found, key=lambda h: h.score, reverse=kind not in LOW_IS_NOTABLE)


def ranked_heads(scores: HeadScores, kind: str) -> list[FoundHead]:
    """Every head, most notable for `kind` first."""
    return find_heads(scores, kind, math.inf if kind in LOW_IS_NOTABLE else -math.inf)


@dataclass(frozen=True)
class AttentionDifference:
    """One head's pattern on side B minus side A, for two runs whose tokens align position by
    position (same length); `differing_positions` lists where the tokens themselves differ."""

    layer: int
    head: int
    label_a: str
    label_b: str
    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    difference: torch.Tensor
    differing_positions: tuple[int, ...]


def alignment_problem(a: AttentionResult, b: AttentionResult, layer: int, head: int) -> str | None:
    """Why the two results can't be compared cell by cell for this head, or None if they can."""
    for side, result in (("first", a), ("second", b)):
        if not (0 <= layer < result.n_layers and 0 <= head < result.n_heads):
            return (f"The {side} model ({result.model_label}) has no head {head_label(layer, head)} "
                    f"({result.n_layers} layers x {result.n_heads} heads).")
    if a.n_tokens != b.n_tokens:
        return (f"The token sequences don't align: {a.n_tokens} tokens against {b.n_tokens}, so "
                "there is no cell-by-cell difference. Use prompts with the same number of tokens.")
    return None


def attention_difference(a: AttentionResult, b: AttentionResult, layer: int,
                         head: int) -> AttentionDifference:
    """B's pattern minus A's for one head; `InvalidOptionError` when the runs don't align."""
    problem = alignment_problem(a, b, layer, head)
    if problem:
        raise InvalidOptionError(problem)
    differing = tuple(i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=True))
                      if x != y or a.tokens[i] != b.tokens[i])
    return AttentionDifference(layer=layer, head=head, label_a=a.model_label, label_b=b.model_label,
                               tokens_a=a.tokens, tokens_b=b.tokens,
                               difference=b.patterns[layer, head] - a.patterns[layer, head],
                               differing_positions=differing)


NOTABLE_THRESHOLDS = {"previous_token": 0.4, "duplicate_token": 0.3, "induction": 0.3,
                      "sink": 0.6, "entropy": 0.3}
TABLE_HEADER = ("head", "layer", "head index", *SCORE_KINDS)


@dataclass(frozen=True)
class HeadScoreTable:
    """The head-score table: one row per head (label, layer, head, every score), the heads
    whose `kind` score passes `threshold` only (all heads when `kind` is None), most notable
    first for `kind`."""

    kind: str | None
    threshold: float | None
    rows: tuple[tuple, ...]
    sources: Mapping[str, str]
    header: tuple[str, ...] = TABLE_HEADER


def head_score_table(scores: HeadScores, kind: str | None = None,
                     threshold: float | None = None) -> HeadScoreTable:
    """Every head's scores as rows, filtered to those passing `threshold` on `kind` if given."""
    if kind is None:
        heads = [(layer, head) for layer in range(scores.n_layers) for head in range(scores.n_heads)]
    elif threshold is None:
        heads = [(h.layer, h.head) for h in ranked_heads(scores, kind)]
    else:
        heads = [(h.layer, h.head) for h in find_heads(scores, kind, threshold)]
    rows = tuple((head_label(layer, head), layer, head,
                  *(round(float(scores.of(k)[layer, head]), 6) for k in SCORE_KINDS))
                 for layer, head in heads)
    return HeadScoreTable(kind=kind, threshold=threshold, rows=rows, sources=dict(scores.sources))


def notable_heads(scores: HeadScores, thresholds: Mapping[str, float] | None = None
                  ) -> dict[str, list[FoundHead]]:
    """For each kind, the heads passing its threshold (`NOTABLE_THRESHOLDS` by default)."""
    thresholds = {**NOTABLE_THRESHOLDS, **(thresholds or {})}
    return {kind: find_heads(scores, kind, thresholds[kind]) for kind in SCORE_KINDS}


# ---------------------------------------------------------------------------------------------
# Export and explanation (registered here so `interp.export` / `interp.explain` find them)
# ---------------------------------------------------------------------------------------------

from interp import export  # noqa: E402
from interp.explain import Explanation, md_escape, register_explainer  # noqa: E402


def result_metadata(result: AttentionResult) -> dict:
    """The JSON metadata stored beside an `AttentionResult`'s arrays in its .npz export."""
    return {"model_name": result.model_name, "model_label": result.model_label,
            "prompt": result.prompt, "tokens": list(result.tokens),
            "token_ids": list(result.token_ids),
            "axes": "patterns[layer, head, query, key]"}


@export.register_npz(AttentionResult)
def attention_npz(result: AttentionResult) -> bytes:
    """An `AttentionResult` as .npz bytes: patterns [layer, head, query, key], token ids, value norms if computed."""
    arrays = {"patterns": result.patterns, "token_ids": torch.tensor(result.token_ids)}
    if result.value_norms is not None:
        arrays["value_norms"] = result.value_norms
    return export.arrays_to_npz(arrays, result_metadata(result))


@export.register_npz(HeadScores)
def head_scores_npz(scores: HeadScores) -> bytes:
    """Every head score [layer, head] of `scores` as .npz bytes, one array per kind."""
    return export.arrays_to_npz({kind: scores.of(kind) for kind in SCORE_KINDS},
                                {"model_name": scores.model_name, "sources": scores.sources,
                                 "sequence_ids": scores.sequence_ids,
                                 "axes": "score[layer, head]"})


@export.register_csv(HeadScores)
def head_scores_csv(scores: HeadScores) -> bytes:
    """One row per head: its layer, head and every score."""
    table = head_score_table(scores)
    return export.table_to_csv(table.header, table.rows)


@export.register_csv(HeadScoreTable)
def head_table_csv(table: HeadScoreTable) -> bytes:
    """The head-score table as CSV bytes."""
    return export.table_to_csv(table.header, table.rows)


ATTENTION_CAVEATS = (
    "Attention weights say where a head reads from, not what it moves or whether the output "
    "depends on it: a large weight on the first token often carries almost nothing (compare the "
    "value-weighted norms), and the effect of a head is a question for patching or ablation.",
    "Head scores are measured on one input (a repeated random-token sequence, or the prompt); a "
    "head can behave differently on other text, and a high score is a pattern, not a proof of "
    "a mechanism.",
)


def score_lines(scores: HeadScores) -> tuple[list[str], dict]:
    """The explanation's lines and facts about `scores`: per kind, the top head and the heads past the threshold."""
    found = notable_heads(scores)
    lines, facts = [], {}
    for kind in SCORE_KINDS:
        best = ranked_heads(scores, kind)[0]
        heads = found[kind]
        facts[kind] = {"best": best.label, "best_score": best.score,
                       "passing": [h.label for h in heads],
                       "threshold": NOTABLE_THRESHOLDS[kind], "measured_on": scores.sources[kind]}
        compare = "at most" if kind in LOW_IS_NOTABLE else "at least"
        listed = ", ".join(f"{h.label} ({h.score:.2f})" for h in heads[:5]) or "none"
        lines.append(f"- **{SCORE_LABELS[kind]}** ({SCORE_MEANING[kind]}; {compare} "
                     f"{NOTABLE_THRESHOLDS[kind]:g}, on {md_escape(scores.sources[kind])}): "
                     f"{listed}; highest {best.label} at {best.score:.2f}.")
    return lines, facts


def kinds_by_head(scores: HeadScores) -> dict[str, list[str]]:
    """Each notable head's label mapped to the score kinds it stands out on."""
    kinds: dict[str, list[str]] = {}
    for kind, heads in notable_heads(scores).items():
        for found in heads:
            kinds.setdefault(found.label, []).append(SCORE_LABELS[kind])
    return kinds


@register_explainer(HeadScores)
def explain_head_scores(scores: HeadScores) -> Explanation:
    """Which heads stand out on each score, and what kind of head that suggests."""
    lines, facts = score_lines(scores)
    kinds = kinds_by_head(scores)
    summary = ("; ".join(f"{label}: {', '.join(found)}" for label, found in sorted(kinds.items()))
               or "no head passes any threshold")
    markdown = "\n".join([
        f"Scores of all {scores.n_layers * scores.n_heads} heads of "
        f"{md_escape(scores.model_label)}.", "", *lines, "",
        f"**Heads by kind**: {summary}.", "", "**What this can and can't show**",
        *(f"- {note}" for note in ATTENTION_CAVEATS)])
    return Explanation(title=f"Head scores of {scores.model_label}", markdown=markdown,
                       facts={"model": scores.model_name, "scores": facts, "kinds_by_head": kinds})


@register_explainer(AttentionResult)
def explain_attention(result: AttentionResult, scores: HeadScores | None = None) -> Explanation:
    """Where the heads look on this prompt (sink share, focused and spread heads), and with
    `scores` which heads stand out and what kind of head they are."""
    patterns = result.patterns
    heads = result.n_layers * result.n_heads
    on_prompt = prompt_style_scores(patterns) if result.n_tokens > 1 else None
    lines = [f"{heads} heads ({result.n_layers} layers x {result.n_heads}) of "
             f"{md_escape(result.model_label)} on a prompt of {result.n_tokens} tokens "
             "(the first is the beginning-of-text token).", ""]
    facts: dict = {"model": result.model_name, "n_tokens": result.n_tokens, "n_heads": heads}
    if on_prompt is not None:
        sink = on_prompt["sink"]
        sinks = int((sink >= NOTABLE_THRESHOLDS["sink"]).sum())
        flat = on_prompt["entropy"].flatten()
        focused, spread = int(flat.argmin()), int(flat.argmax())
        label = lambda index: head_label(index // result.n_heads, index % result.n_heads)  # noqa: E731
        lines += [f"- {sinks} of {heads} heads put at least {NOTABLE_THRESHOLDS['sink']:.0%} "
                  f"of their attention on the first token on average (mean over heads "
                  f"{float(sink.mean()):.0%}).",
                  f"- Most focused head: {label(focused)} (mean entropy "
                  f"{float(flat[focused]):.2f} nats); most spread out: {label(spread)} "
                  f"({float(flat[spread]):.2f} nats; uniform over the prompt would be up to "
                  f"{math.log(result.n_tokens):.2f}).",
                  f"- Strongest previous-token head on this prompt: "
                  f"{label(int(on_prompt['previous_token'].flatten().argmax()))} "
                  f"({float(on_prompt['previous_token'].max()):.2f})."]
        facts.update(sink_heads=sinks, mean_sink=float(sink.mean()), focused_head=label(focused),
                     focused_entropy=float(flat[focused]), spread_head=label(spread))
    if scores is not None:
        score_text, score_facts = score_lines(scores)
        kinds = kinds_by_head(scores)
        lines += ["", "**Which heads stand out, and what kind they are**", *score_text]
        if kinds:
            lines.append("")
            lines.append("; ".join(f"{label}: {', '.join(found)}"
                                   for label, found in sorted(kinds.items())) + ".")
        facts.update(scores=score_facts, kinds_by_head=kinds)
    lines += ["", "**What this can and can't show**", *(f"- {note}" for note in ATTENTION_CAVEATS)]
    return Explanation(title=f"Attention of {result.model_label}", markdown="\n".join(lines),
                       facts=facts)


@dataclass(frozen=True)
class AttentionRun:
    """What the Attention page shows for one model and prompt: the patterns and the head scores."""

    patterns: AttentionResult
    scores: HeadScores


def run_attention(model, prompt: str, value_norms: bool = False,
                  repeat_length: int = DEFAULT_REPEAT_LENGTH, seed: int = DEFAULT_SEED,
                  progress: Progress | None = None) -> AttentionRun:
    """`attention_patterns` then `head_scores` (previous-token, sink and entropy on the prompt):
    two forward passes in all."""
    def part(start: float, share: float) -> Progress | None:
        if progress is None:
            return None
        return lambda fraction, text: progress(start + share * fraction, text)

    patterns = attention_patterns(model, prompt, value_norms=value_norms, progress=part(0.0, 0.5))
    scores = head_scores(model, repeat_length, seed, prompt_result=patterns,
                         progress=part(0.5, 0.5))
    return AttentionRun(patterns=patterns, scores=scores)


def longest_repeat(model) -> int:
    """The longest repeated sequence `head_scores` accepts for this model's context."""
    return (model.info.n_ctx - 1) // 2
