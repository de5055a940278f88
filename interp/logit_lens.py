"""Logit lens and direct logit attribution: what the model would predict if it stopped early, and
which components write the final answer.

The logit lens applies the final LayerNorm and the unembedding to the residual stream after the
embeddings and after every block, as if the model stopped there: each layer boundary gets a
next-token distribution (top-k, entropy, KL divergence to the model's real output). The last
boundary is the model's own output. Direct logit attribution (DLA) splits the final logit of a
token (or the difference of two) into what the embeddings, every attention head, every MLP and
the biases wrote along that token's unembedding direction, with the final LayerNorm's scale
frozen at its value in this run, so the parts add up to the logit exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from interp.errors import InvalidOptionError, InvalidPromptError, UnsupportedArchitectureError
from interp.validation import CheckedPrompt, check_prompt

Progress = Callable[[float, str], None]

# Rows (layer x position pairs) unembedded together: one matrix product of this height streams
# the unembedding once, and the vocabulary is taken VOCAB_CHUNK columns at a time so that a block
# of logits (768 x 2048 floats, 6 MB) stays in the cache while every statistic reads it.
ROWS_PER_BLOCK = 768
VOCAB_CHUNK = 2048
ACCUMULATE = torch.float64  # softmax sums over 50k terms: small vectors, so keep them exact


class _StopForward(Exception):
    """Raised by the lens's hook once the final LayerNorm's input is captured: the model's own
    unembedding is skipped, and the lens computes the last row itself with the others."""


def layer_labels(n_layers: int) -> tuple[str, ...]:
    """Row names of a lens: the embeddings, then the residual stream after each block."""
    return ("embeddings", *(f"after L{layer}" for layer in range(n_layers)))


@dataclass(frozen=True)
class LensResult:
    """The logit lens of one prompt. Rows are layer boundaries (`layer_labels`: embeddings, then
    after each block; the last row is the model's output), columns are positions; position p
    predicts the token at p + 1.

    Kept (nothing of size layers x positions x vocabulary): at every row and position the top-k
    tokens with log-probabilities, the entropy and KL(final || row) in nats; for each position
    its `candidate_ids` (the model's final top-k there) with their log-probability and rank at
    every row; for each `tracked_ids` token (asked for with `track=`) its log-probability and
    rank at every row and position, which `probs_of` / `ranks_of` read. Ranks count from 0 (the
    row's top token; None when the lens ran with `ranks=False`). Shapes: [rows, pos, k], [rows, pos], [pos, k], [rows, pos, n_tracked].
    """

    model_name: str
    prompt: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    layers: tuple[str, ...]
    k: int
    top_ids: torch.Tensor
    top_log_probs: torch.Tensor
    entropy: torch.Tensor
    kl_to_final: torch.Tensor
    candidate_ids: torch.Tensor
    candidate_log_probs: torch.Tensor
    candidate_ranks: torch.Tensor | None
    tracked_ids: tuple[int, ...]
    tracked_log_probs: torch.Tensor
    tracked_ranks: torch.Tensor | None
    token_text: dict[int, str] = field(default_factory=dict)
    dropped_tokens: int = 0

    @property
    def n_positions(self) -> int:
        return len(self.token_ids)

    @property
    def note(self) -> str | None:
        """The visible note when the context was cut from the left to fit the model's window."""
        if not self.dropped_tokens:
            return None
        return (f"The text is longer than the model's context window: its first "
                f"{self.dropped_tokens} tokens were dropped, and the lens reads the last "
                f"{self.n_positions}.")

    def text_of(self, token_id: int) -> str:
        return self.token_text.get(int(token_id), f"<id {int(token_id)}>")

    def _tracked_column(self, token_id: int) -> int:
        token_id = int(token_id)
        if token_id not in self.tracked_ids:
            listed = ", ".join(f"{t} ({self.text_of(t)!r})" for t in self.tracked_ids) or "none"
            raise InvalidOptionError(
                f"Token id {token_id} was not tracked in this lens (tracked: {listed}). Run "
                f"logit_lens(..., track=({token_id},)) to keep its probability and rank.")
        return self.tracked_ids.index(token_id)

    def probs_of(self, token_id: int) -> torch.Tensor:
        """Probability of a tracked token at every row and position: [rows, pos]."""
        return self.tracked_log_probs[..., self._tracked_column(token_id)].exp()

    def ranks_of(self, token_id: int) -> torch.Tensor:
        """Rank (0 = top) of a tracked token at every row and position: [rows, pos]."""
        if self.tracked_ranks is None:
            raise InvalidOptionError("This lens ran with ranks=False; run it again with "
                                     "ranks=True to count ranks.")
        return self.tracked_ranks[..., self._tracked_column(token_id)]

    def first_layer_with_final_top1(self, position: int) -> int:
        """The first row from which the final top-1 token stays the row's top-1 up to the end:
        where the answer "forms" at this position."""
        final = int(self.candidate_ids[position, 0])
        matches = (self.top_ids[:, position, 0] == final).tolist()
        row = len(matches) - 1
        while row > 0 and matches[row - 1]:
            row -= 1
        return row


def residual_stream(model, token_ids: torch.Tensor) -> torch.Tensor:
    """The residual stream [rows, pos, d_model] after the embeddings and after each block, from
    one forward pass that stops at the final LayerNorm's input."""
    n_layers = model.info.n_layers
    stream = torch.empty(n_layers + 1, token_ids.shape[1], model.info.d_model,
                         device=model.device)

    def keep(row: int, stop: bool = False):
        def hook(activation, hook):
            stream[row].copy_(activation[0])
            if stop:
                raise _StopForward
        return hook

    hooks = [("blocks.0.hook_resid_pre", keep(0))]
    hooks += [(f"blocks.{layer}.hook_resid_post", keep(layer + 1)) for layer in range(n_layers - 1)]
    hooks.append(("ln_final.hook_in", keep(n_layers, stop=True)))
    with torch.no_grad(), model.hooked(hooks) as bridge:
        try:
            # No KV cache: it would hold every layer's keys and values (75 MB at 1,024 tokens
            # on GPT-2 small) for a forward pass that is never continued.
            bridge(token_ids.to(model.device), use_cache=False)
        except _StopForward:
            pass
    return stream


@dataclass
class _RowStats:
    """Running softmax statistics of a block of rows while the vocabulary streams past."""

    maximum: torch.Tensor
    total: torch.Tensor  # sum of exp(logit - maximum)
    weighted: torch.Tensor  # sum of exp(logit - maximum) * logit
    final_dot: torch.Tensor  # sum of p_final * logit
    top_values: torch.Tensor
    top_ids: torch.Tensor
    signs: torch.Tensor  # sum of sign(logit - watched logit): #above - #below


GROUP = 16  # top-k per chunk looks only inside the k groups of 16 columns with the largest maxima


def chunk_top(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`logits.topk(k)` along the last axis, faster: the k largest values lie in the k groups
    (of GROUP consecutive columns) whose maxima are largest, so only those k x GROUP are sorted."""
    n_rows, width = logits.shape
    if width % GROUP or width // GROUP <= k:
        return logits.topk(min(k, width), dim=-1)
    groups = logits.view(n_rows, width // GROUP, GROUP)
    best_groups = groups.amax(-1).topk(k, dim=-1).indices  # [R, k]
    picked = groups.gather(1, best_groups[:, :, None].expand(-1, -1, GROUP)).reshape(n_rows, -1)
    values, where = picked.topk(k, dim=-1)
    columns = best_groups.gather(1, where // GROUP) * GROUP + where % GROUP
    return values, columns


def sign_sums(logits: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """For each row and threshold, #logits above it minus #logits below it ([R, w]); a sum of
    signs costs a third of counting a boolean mask on a CPU."""
    sums = torch.empty(thresholds.shape, device=logits.device)
    for column in range(thresholds.shape[1]):
        sums[:, column] = (logits - thresholds[:, column, None]).sign_().sum(-1)
    return sums


def ranks_from_signs(signs: torch.Tensor, n_columns: int, own_above: torch.Tensor) -> torch.Tensor:
    """Tokens strictly above each watched logit: (above - below + all) / 2, rounded down (one
    tie, usually the token's own column, adds a half), less the token itself where its own
    column rounded above its watched logit."""
    return torch.floor((signs.to(ACCUMULATE) + n_columns) / 2).long() - own_above.long()


def stream_rows(rows: torch.Tensor, unembed: torch.Tensor, bias: torch.Tensor, k: int,
                watched_ids: torch.Tensor, watched_logits: torch.Tensor,
                final_probs: torch.Tensor, rows_per_position: int,
                count_ranks: bool = True) -> tuple[_RowStats, torch.Tensor | None]:
    """Softmax statistics of `rows @ unembed + bias` ([R, V], never held whole), taken
    VOCAB_CHUNK columns at a time with an online log-sum-exp, and the rank of each watched token.

    Rows are ordered (layer, position) with `rows_per_position` layers; `final_probs` [pos, V]
    is the model's output distribution at those positions (for the KL), `watched_logits`
    [R, w] the logits of tokens `watched_ids` [R, w] whose rank is counted (w may be 0) when
    `count_ranks` (a sum of signs per watched token and chunk: a fifth of the lens's time at k=5).
    """
    n_rows, vocab = rows.shape[0], unembed.shape[1]
    device = rows.device
    stats = _RowStats(
        maximum=torch.full((n_rows,), -math.inf, device=device, dtype=ACCUMULATE),
        total=torch.zeros(n_rows, device=device, dtype=ACCUMULATE),
        weighted=torch.zeros(n_rows, device=device, dtype=ACCUMULATE),
        final_dot=torch.zeros(n_rows, device=device, dtype=ACCUMULATE),
        top_values=torch.empty(n_rows, 0, device=device),
        top_ids=torch.empty(n_rows, 0, device=device, dtype=torch.long),
        signs=torch.zeros(watched_logits.shape, device=device, dtype=ACCUMULATE))
    own_above = torch.zeros(watched_ids.shape, device=device, dtype=torch.bool)
    for start in range(0, vocab, VOCAB_CHUNK):
        end = min(start + VOCAB_CHUNK, vocab)
        logits = torch.addmm(bias[start:end], rows, unembed[:, start:end])
        values, ids = chunk_top(logits, k)
        new_max = torch.maximum(stats.maximum, values[:, 0].to(ACCUMULATE))
        rescale = (stats.maximum - new_max).exp()
        shifted = (logits - new_max.to(logits.dtype)[:, None]).exp_()
        stats.total = stats.total * rescale + shifted.sum(-1).to(ACCUMULATE)
        stats.weighted = (stats.weighted * rescale
                          + torch.linalg.vecdot(shifted, logits).to(ACCUMULATE))
        stats.maximum = new_max
        del shifted
        per_layer = logits.view(rows_per_position, -1, end - start)
        stats.final_dot += torch.linalg.vecdot(per_layer, final_probs[:, start:end]
                                               ).reshape(-1).to(ACCUMULATE)
        merged_values = torch.cat([stats.top_values, values], dim=-1)
        merged_ids = torch.cat([stats.top_ids, ids + start], dim=-1)
        best = merged_values.topk(min(k, merged_values.shape[1]), dim=-1)
        stats.top_values, stats.top_ids = best.values, merged_ids.gather(-1, best.indices)
        if count_ranks and watched_ids.shape[1]:
            stats.signs += sign_sums(logits, watched_logits).to(ACCUMULATE)
            inside = (watched_ids >= start) & (watched_ids < end)
            own = logits.gather(-1, (watched_ids - start).clamp(0, end - start - 1))
            own_above |= inside & (own > watched_logits)
    if not count_ranks:
        return stats, None
    return stats, ranks_from_signs(stats.signs, vocab, own_above)


def lens_of_ids(model, token_ids: Sequence[int], k: int = 5, track: Sequence[int] = (),
                prompt: str | None = None, truncate_left: bool = False, ranks: bool = True,
                progress: Progress | None = None) -> LensResult:
    """The logit lens of a token sequence (BOS included if wanted). With `truncate_left`, a
    sequence longer than the model's window keeps its last n_ctx tokens (`result.note` says so);
    otherwise it is refused. `ranks=False` skips counting ranks (their fields are then None)."""
    info = model.info
    if not 1 <= k <= min(info.d_vocab, 100):
        raise InvalidOptionError(f"k must be between 1 and {min(info.d_vocab, 100)}; got {k}.")
    ids = [int(t) for t in token_ids]
    tracked = tuple(dict.fromkeys(int(t) for t in track))
    bad = [t for t in (*ids, *tracked) if not 0 <= t < info.d_vocab]
    if bad:
        raise InvalidOptionError(f"Token ids must be between 0 and {info.d_vocab - 1}; got {bad[:3]}.")
    if not ids:
        raise InvalidPromptError("There are no tokens to read. Type some text.")
    dropped = max(0, len(ids) - info.n_ctx)
    if dropped and not truncate_left:
        raise InvalidPromptError(
            f"The text is {len(ids)} tokens long, but {info.label} reads at most {info.n_ctx}. "
            f"Shorten it by {dropped} tokens.")
    ids = ids[dropped:]
    report = progress or (lambda fraction, text: None)
    report(0.0, "Forward pass")
    normed = normalized_stream(model, torch.tensor([ids]))
    unembed, bias = model.bridge.W_U, model.bridge.b_U
    n_rows, n_pos, _ = normed.shape
    block = max(1, ROWS_PER_BLOCK // max(n_rows - 1, 1))
    parts: dict[str, list] = {}  # a value is None in every block (no ranks) or in none
    tracked_tensor = torch.tensor(tracked, dtype=torch.long, device=normed.device)
    for start in range(0, n_pos, block):
        end = min(start + block, n_pos)
        for name, value in lens_block(normed[:, start:end], unembed, bias, k, tracked_tensor,
                                      ranks).items():
            parts.setdefault(name, []).append(None if value is None else value.cpu())
        report(end / n_pos, f"Unembedding positions {start}-{end - 1} of {n_pos}")
    # Blocks are consecutive positions: the position axis is 0 for candidate_ids, else 1.
    joined: dict[str, Any] = {name: None if values[0] is None else
              torch.cat(values, dim=0 if name == "candidate_ids" else 1)
              for name, values in parts.items()}
    shown_ids = sorted({*joined["top_ids"].unique().tolist(), *tracked, *ids})
    texts = dict(zip(shown_ids, model.display_tokens(shown_ids), strict=True))
    return LensResult(
        model_name=model.name, prompt=prompt if prompt is not None else model.decode(ids),
        token_ids=tuple(ids), tokens=tuple(texts[t] for t in ids), layers=layer_labels(n_rows - 1),
        k=k, tracked_ids=tracked, token_text=texts, dropped_tokens=dropped, **joined)


def normalized_stream(model, token_ids: torch.Tensor) -> torch.Tensor:
    """The final LayerNorm (the model's own module) applied to every row of the stream."""
    stream = residual_stream(model, token_ids)
    with torch.no_grad(), model.lock:
        for row in range(stream.shape[0]):  # in place, a row at a time: no second copy
            stream[row] = model.bridge.ln_final(stream[row])
    return stream


def lens_block(normed: torch.Tensor, unembed: torch.Tensor, bias: torch.Tensor, k: int,
               tracked: torch.Tensor, ranks: bool = True) -> dict[str, torch.Tensor | None]:
    """Every statistic of a block of positions ([rows, pos, d] normalized stream)."""
    n_rows, n_pos, d_model = normed.shape
    with torch.no_grad():
        final_logits = torch.addmm(bias, normed[-1], unembed)  # [pos, V]: the model's output
        final_log_probs = final_logits.log_softmax(-1)
        final_top = final_log_probs.topk(k, dim=-1)
        candidates = final_top.indices  # [pos, k]
        final_probs = final_log_probs.exp()
        final_entropy = -torch.linalg.vecdot(final_probs, final_log_probs)
        watched = torch.cat([candidates, tracked.expand(n_pos, -1)], dim=-1)  # [pos, w]
        watched_final = final_log_probs.gather(-1, watched)
        final_ranks = (ranks_from_signs(sign_sums(final_logits, final_logits.gather(-1, watched)),
                                        final_logits.shape[1],
                                        torch.zeros(watched.shape, dtype=torch.bool,
                                                    device=watched.device))
                       if ranks else None)
        del final_logits
        del final_log_probs

        early = normed[:-1].reshape(-1, d_model)  # rows (layer, position)
        watched_rows = watched.repeat(n_rows - 1, 1)
        watched_logits = (torch.einsum("rd,rwd->rw", early, unembed.T[watched_rows])
                          + bias[watched_rows])
        stats, early_ranks = stream_rows(early, unembed, bias, k, watched_rows, watched_logits,
                                         final_probs, n_rows - 1, count_ranks=ranks)
        log_normalizer = stats.maximum + stats.total.log()
        entropy = log_normalizer - stats.weighted / stats.total
        kl = (log_normalizer - stats.final_dot - final_entropy.to(ACCUMULATE).repeat(n_rows - 1))
        top_log_probs = stats.top_values.to(ACCUMULATE) - log_normalizer[:, None]
        watched_log_probs = watched_logits.to(ACCUMULATE) - log_normalizer[:, None]

        def rows(early_values: torch.Tensor, final_values: torch.Tensor) -> torch.Tensor:
            shaped = early_values.reshape(n_rows - 1, n_pos, *early_values.shape[1:])
            return torch.cat([shaped, final_values[None].to(shaped.dtype)], dim=0)

        n_candidates = candidates.shape[1]
        all_log_probs = rows(watched_log_probs.float(), watched_final)
        all_ranks = rows(early_ranks, final_ranks) if ranks else None  # type: ignore[arg-type]  # both set when ranks
        return {
            "top_ids": rows(stats.top_ids, final_top.indices),
            "top_log_probs": rows(top_log_probs.float(), final_top.values),
            "entropy": rows(entropy.float(), final_entropy),
            "kl_to_final": rows(kl.clamp_min(0).float(), torch.zeros(n_pos, device=kl.device)),
            "candidate_ids": candidates,
            "candidate_log_probs": all_log_probs[..., :n_candidates],
            "candidate_ranks": None if all_ranks is None else all_ranks[..., :n_candidates],
            "tracked_log_probs": all_log_probs[..., n_candidates:],
            "tracked_ranks": None if all_ranks is None else all_ranks[..., n_candidates:],
        }


def logit_lens(model, prompt: str, k: int = 5, track: Sequence[int] = (), ranks: bool = True,
               progress: Progress | None = None) -> LensResult:
    """The logit lens of `prompt` (BOS first): top-k, entropy and KL to the final distribution
    at every layer boundary and position, plus probability and rank of each `track` token id.
    One forward pass; the unembedding runs in blocks (see `LensResult` for what is kept)."""
    checked = check_prompt(prompt, model)
    return lens_of_ids(model, checked.token_ids, k=k, track=track, prompt=prompt, ranks=ranks,
                       progress=progress)


def colour_lens(model, prompt: str, k: int = 5, colour: str = "",
                progress: Progress | None = None) -> LensResult:
    """The lens the Logit lens page (and the API) shows: `logit_lens` of `prompt`, also tracking
    the "colour by" token when `colour` (text that is exactly one token) is given."""
    track = (resolve_token(model, colour, "colour-by token"),) if colour else ()
    return logit_lens(model, prompt, k=k, track=track, progress=progress)


# ---------------------------------------------------------------------------------------------
# Direct logit attribution
# ---------------------------------------------------------------------------------------------

COMPONENT_KINDS = ("embedding", "head", "attention bias", "mlp", "bias")
KIND_NAMES = {"embedding": "embeddings", "head": "heads", "attention bias": "attention biases",
              "mlp": "MLPs", "bias": "final biases"}


@dataclass(frozen=True)
class DLAResult:
    """The logit of `target` (minus that of `contrast`, when given) at every position, split
    into what each component wrote: `contributions` [pos, component], named by `labels` and
    `kinds`, summing with nothing left over to `logit` [pos] (the model's own value).

    Components, in order: the token and position embeddings, every head (L{l}H{h}: its z
    through W_O), each layer's attention output bias b_O, every MLP (its bias included), and
    the final LayerNorm bias and unembedding bias together. Each is centred and divided by the
    final LayerNorm's scale at its position in this run (`final_scale` [pos]), frozen, which is
    what makes the split exact; the scale itself depends on every component, so a component's
    share is its direct effect only, not what removing it would change.
    """

    model_name: str
    prompt: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    target_id: int
    target: str
    contrast_id: int | None
    contrast: str | None
    labels: tuple[str, ...]
    kinds: tuple[str, ...]
    contributions: torch.Tensor
    logit: torch.Tensor
    final_scale: torch.Tensor
    n_layers: int
    n_heads: int

    @property
    def n_positions(self) -> int:
        return len(self.token_ids)

    @property
    def metric_label(self) -> str:
        if self.contrast is None:
            return f"logit of {self.target!r}"
        return f"logit({self.target!r}) - logit({self.contrast!r})"

    def head_grid(self, position: int = -1) -> torch.Tensor:
        """The heads' contributions at one position as [layer, head]."""
        heads = [i for i, kind in enumerate(self.kinds) if kind == "head"]
        return self.contributions[position, heads].reshape(self.n_layers, self.n_heads)

    def ranked(self, position: int = -1, top: int | None = None) -> list[tuple[str, float]]:
        """Components by |contribution| at one position, largest first."""
        values = self.contributions[position].tolist()
        order = sorted(range(len(values)), key=lambda i: -abs(values[i]))
        return [(self.labels[i], values[i]) for i in order[:top]]


def component_names(n_layers: int, n_heads: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The labels and kinds of every DLA component, in the order DLA reports them."""
    labels, kinds = ["token embedding", "position embedding"], ["embedding", "embedding"]
    for layer in range(n_layers):
        labels += [f"L{layer}H{head}" for head in range(n_heads)] + [f"L{layer} attention bias"]
        kinds += ["head"] * n_heads + ["attention bias"]
        labels.append(f"MLP {layer}")
        kinds.append("mlp")
    return (*labels, "final LN + unembedding biases"), (*kinds, "bias")


def resolve_token(model, token: int | str, what: str) -> int:
    """A token id from an id or from text that is exactly one token."""
    if isinstance(token, int):
        if not 0 <= token < model.info.d_vocab:
            raise InvalidOptionError(
                f"The {what} token id must be between 0 and {model.info.d_vocab - 1}; got {token}.")
        return token
    ids = model.token_ids(str(token))
    if len(ids) != 1:
        shown = " + ".join(repr(t) for t in model.display_tokens(ids)) or "no tokens"
        raise InvalidOptionError(
            f"The {what} {str(token)!r} is {shown} for this model's tokenizer; pick text that is "
            "exactly one token (GPT-2 tokens usually start with a space, e.g. ' Paris').")
    return ids[0]


def direct_logit_attribution(model, prompt: str, target: int | str | None = None,
                             contrast: int | str | None = None) -> DLAResult:
    """Split the final logit of `target` (default: the model's top prediction after the whole
    prompt), or its difference with `contrast`, into every component's direct contribution, at
    every position. One forward pass (see `DLAResult`)."""
    return dla_of_checked(model, check_prompt(prompt, model), target, contrast)


def dla_of_checked(model, checked: CheckedPrompt, target: int | str | None = None,
                   contrast: int | str | None = None) -> DLAResult:
    """`direct_logit_attribution` of a prompt already tokenized and checked (a task's token
    ids, say); the model must have GPT-2-style blocks."""
    from interp.patching.architecture import has_gpt2_blocks

    if not has_gpt2_blocks(model):
        raise UnsupportedArchitectureError(
            f"Direct logit attribution reads GPT-2-style blocks (attention heads through W_O, "
            f"then an MLP, a final LayerNorm); {model.info.label} is a "
            f"{model.info.architecture}. The logit lens works on it.")
    prompt = checked.text
    info, bridge = model.info, model.bridge
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(activation, hook):
            captured[name] = activation[0].detach()  # by our name: hook.name may be an alias's
        return hook

    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"]
    for layer in range(info.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
    with torch.no_grad(), model.hooked([(name, keep(name)) for name in names]) as hooked:
        logits = hooked(checked.as_tensor().to(model.device), use_cache=False)[0]
        target_id = (int(logits[-1].argmax()) if target is None
                     else resolve_token(model, target, "target"))
        contrast_id = None if contrast is None else resolve_token(model, contrast, "contrast")
        if contrast_id == target_id:
            raise InvalidOptionError("The contrast token is the target itself; pick another one "
                                     "(or none, for the target's logit alone).")
        direction = bridge.W_U[:, target_id].clone()
        bias = bridge.b_U[target_id].clone()
        metric = logits[:, target_id].clone()
        if contrast_id is not None:
            direction -= bridge.W_U[:, contrast_id]
            bias -= bridge.b_U[contrast_id]
            metric -= logits[:, contrast_id]
        scaled = bridge.ln_final.weight * direction
        centred = scaled - scaled.mean()  # (y - mean y) . v = y . (v - mean v)
        scale = captured["ln_final.hook_scale"].reshape(-1)  # [pos]
        columns = [captured["hook_embed"] @ centred, captured["hook_pos_embed"] @ centred]
        for layer in range(info.n_layers):
            attention = bridge.blocks[layer].attn
            per_head = torch.einsum("hdm,m->hd", attention.W_O, centred)
            z = captured[f"blocks.{layer}.attn.hook_z"]  # [pos, head, d_head]
            columns += list(torch.einsum("phd,hd->hp", z, per_head))
            columns.append((attention.b_O @ centred).expand(z.shape[0]))
            columns.append(captured[f"blocks.{layer}.hook_mlp_out"] @ centred)
        contributions = torch.stack(columns, dim=1) / scale[:, None]
        final_bias = (bridge.ln_final.bias @ direction + bias).expand(scale.shape[0])
        contributions = torch.cat([contributions, final_bias[:, None]], dim=1)
    labels, kinds = component_names(info.n_layers, info.n_heads)
    target_text, *contrast_text = model.display_tokens(
        [target_id] + ([] if contrast_id is None else [contrast_id]))
    return DLAResult(
        model_name=model.name, prompt=prompt, token_ids=checked.token_ids, tokens=checked.tokens,
        target_id=target_id, target=target_text, contrast_id=contrast_id,
        contrast=contrast_text[0] if contrast_text else None, labels=labels, kinds=kinds,
        contributions=contributions.float().cpu(), logit=metric.float().cpu(),
        final_scale=scale.float().cpu(), n_layers=info.n_layers, n_heads=info.n_heads)


# ---------------------------------------------------------------------------------------------
# Explanations and tables (registered here, so any result of this module can be explained and
# exported wherever it is used)
# ---------------------------------------------------------------------------------------------

from interp.explain import Explanation, md_escape, register_explainer  # noqa: E402
from interp.export import register_csv, table_to_csv  # noqa: E402

LENS_CAVEATS = (
    "The logit lens reads every layer with the final LayerNorm and unembedding, which were "
    "trained only on the last layer's output; early rows are therefore biased (often towards "
    "the current token or common continuations) and their probabilities understate what a "
    "probe could read there.",
    "The tuned lens (a learned affine map per layer, Belrose et al. 2023) corrects that bias; it "
    "is out of scope here, so read early rows as a rough picture.",
    "A token decodable at a layer is not proof that the model uses it there; patching and DLA "
    "test what components do.",
)
DLA_CAVEATS = (
    "DLA measures direct effects only: what a component writes straight to the unembedding. A "
    "head whose output is read by later layers can matter a lot and score near 0 here.",
    "The final LayerNorm's scale is frozen at its value in this run, which is what makes the "
    "parts add up; removing a component would change that scale too.",
    "Attention output biases and MLP biases are counted as their own parts (MLP biases inside "
    "their MLP), so the sum leaves nothing out.",
)


def fmt(value: float) -> str:
    """A number to four significant digits."""
    return f"{value:.4g}"


def at_row(label: str) -> str:
    """A row label in a sentence: "at the embeddings", "after L3"."""
    return "at the embeddings" if label == "embeddings" else label


@register_explainer(LensResult)
def explain_lens(result: LensResult, position: int | None = None) -> Explanation:
    """Where the final answer forms at one position (default: the last), and how sure each
    layer is, from the lens's own numbers."""
    position = result.n_positions - 1 if position is None else position
    final_id = int(result.candidate_ids[position, 0])
    answer = result.text_of(final_id)
    final_prob = float(result.candidate_log_probs[-1, position, 0].exp())
    forms = result.first_layer_with_final_top1(position)
    probs = result.candidate_log_probs[:, position, 0].exp().tolist()
    ranks = (None if result.candidate_ranks is None
             else result.candidate_ranks[:, position, 0].tolist())
    half = next((row for row, p in enumerate(probs) if p >= final_prob / 2), len(probs) - 1)
    entropy = result.entropy[:, position].tolist()
    kl = result.kl_to_final[:, position].tolist()
    near = next((row for row, value in enumerate(kl) if value < 1.0), len(kl) - 1)
    formed_at = [result.first_layer_with_final_top1(p) for p in range(result.n_positions)]
    median_row = sorted(formed_at)[len(formed_at) // 2]
    lines = [
        "The logit lens reads the residual stream at every layer boundary through the final "
        "LayerNorm and unembedding, as if the model stopped there.",
        "",
        f"After position {position} ({md_escape(result.tokens[position])}) the model predicts "
        f"**{md_escape(answer)}** with p = {fmt(final_prob)}.",
        f"- It becomes the lens's top-1 token **{at_row(result.layers[forms])}** and stays top-1 from "
        "there on" + ("." if ranks is None else f" (at the embeddings it ranks {ranks[0]}).") ,
        f"- It first reaches half its final probability {at_row(result.layers[half])}.",
        f"- Entropy is {fmt(entropy[0])} nats at the embeddings and {fmt(entropy[-1])} nats "
        f"at the output; KL to the final distribution drops below 1 nat "
        f"{at_row(result.layers[near])}.",
        f"- Over all {result.n_positions} positions, the final top-1 settles (median) "
        f"{at_row(result.layers[median_row])}.",
        "", "**What this can and can't show**", *(f"- {note}" for note in LENS_CAVEATS),
    ]
    if result.note:
        lines.insert(2, md_escape(result.note))
    facts = {
        "model": result.model_name, "method": "logit lens", "position": position,
        "position_token": result.tokens[position], "answer": answer, "answer_probability":
        final_prob, "forms_at": result.layers[forms], "half_probability_at": result.layers[half],
        "kl_below_1_nat_at": result.layers[near], "entropy_by_layer": entropy,
        "answer_probability_by_layer": probs, "answer_rank_by_layer": ranks,
        "median_settling_layer": result.layers[median_row], "layers": list(result.layers),
        "dropped_tokens": result.dropped_tokens,
    }
    return Explanation(title=f"Logit lens: where {answer!r} forms", markdown="\n".join(lines),
                       facts=facts)


@register_explainer(DLAResult)
def explain_dla(result: DLAResult, position: int | None = None, top_k: int = 3) -> Explanation:
    """Which components write the answer at one position (default: the last)."""
    position = result.n_positions - 1 if position is None else position
    row = result.contributions[position]
    total = float(result.logit[position])
    by_kind = {kind: float(sum(row[i] for i, k in enumerate(result.kinds) if k == kind))
               for kind in COMPONENT_KINDS}
    ranked = result.ranked(position)
    top = ranked[:top_k]
    magnitude = sum(abs(v) for _, v in ranked) or 1.0
    lines = [
        f"Direct logit attribution of the **{md_escape(result.metric_label)}** after position "
        f"{position} ({md_escape(result.tokens[position])}): {fmt(total)} in all.",
        "",
        "**Largest direct contributions:**",
        *(f"{i}. {md_escape(label)}: {value:+.4g} ({abs(value) / magnitude:.0%} of the summed "
          "size)" for i, (label, value) in enumerate(top, start=1)),
        "",
        "By kind: " + ", ".join(f"{KIND_NAMES[kind]} {value:+.4g}"
                                for kind, value in by_kind.items()) + ".",
        "", "**What this can and can't show**", *(f"- {note}" for note in DLA_CAVEATS),
    ]
    facts = {"model": result.model_name, "method": "direct logit attribution",
             "metric": result.metric_label, "position": position, "total": total,
             "by_kind": by_kind,
             "top": [{"label": label, "contribution": value} for label, value in top]}
    return Explanation(title=f"DLA of the {result.metric_label}", markdown="\n".join(lines),
                       facts=facts)


@register_csv(LensResult)
def lens_csv(result: LensResult) -> bytes:
    """One row per position, layer and top-k rank."""
    header = ["position", "token", "layer", "rank", "top token", "top token id", "probability",
              "entropy (nats)", "KL to final (nats)"]
    rows = []
    for position in range(result.n_positions):
        for row, layer in enumerate(result.layers):
            for rank in range(result.k):
                token_id = int(result.top_ids[row, position, rank])
                rows.append((position, result.tokens[position], layer, rank + 1,
                             result.text_of(token_id), token_id,
                             float(result.top_log_probs[row, position, rank].exp()),
                             float(result.entropy[row, position]),
                             float(result.kl_to_final[row, position])))
    return table_to_csv(header, rows)


@register_csv(DLAResult)
def dla_csv(result: DLAResult) -> bytes:
    """One row per position and component; `total` is the model's own value there."""
    header = ["position", "token", "component", "kind", "contribution", "total"]
    rows = [(position, result.tokens[position], label, kind,
             float(result.contributions[position, column]), float(result.logit[position]))
            for position in range(len(result.token_ids))
            for column, (label, kind) in enumerate(zip(result.labels, result.kinds, strict=True))]
    return table_to_csv(header, rows)
