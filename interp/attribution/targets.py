"""What an attribution explains: one scalar of the model's output at the last position.

Every method scores input tokens by how much they move one number, the *target*: the logit of
the predicted next token (the default), of a chosen token, the difference of two tokens' logits
(a contrast such as " Mary" vs " John", which cancels whatever raises both names alike), or the
logits of a greedy continuation, explained one generated token at a time (a matrix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError, invalid_choice

TARGET_KINDS = ("predicted", "token", "contrast", "continuation")
# A continuation is explained by one attribution per generated token: keep it short.
MAX_CONTINUATION_TOKENS = 16


@dataclass(frozen=True)
class AttributionTarget:
    """The scalar an attribution explains, read from the logits at the last position.

    `predicted`: logit of `token_id`, the model's top next token; `token`: logit of `token_id`;
    `contrast`: logit[`token_id`] - logit[`contrast_id`]; `continuation`: the greedy continuation
    `continuation_ids`, explained one generated token at a time (its logit given the prompt and
    the tokens generated before it). `label` is for display (plain text: escape it before it
    goes into HTML or Markdown), e.g. "' Mary' - ' John'".
    """

    kind: str
    token_id: int | None
    contrast_id: int | None
    label: str
    continuation_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise invalid_choice("attribution target kind", self.kind, TARGET_KINDS)
        if self.kind == "continuation":
            if not self.continuation_ids or self.token_id is not None or self.contrast_id is not None:
                raise InvalidOptionError(
                    "A continuation target holds its generated tokens in continuation_ids and "
                    "no token_id or contrast_id.")
            return
        if self.token_id is None:
            raise InvalidOptionError(f"A {self.kind!r} target needs a token_id.")
        if (self.contrast_id is None) == (self.kind == "contrast"):
            raise InvalidOptionError(
                "A contrast target needs both token_id and contrast_id; other kinds take no "
                "contrast_id.")
        if self.continuation_ids:
            raise InvalidOptionError(f"A {self.kind!r} target takes no continuation_ids.")

    @property
    def is_continuation(self) -> bool:
        return self.kind == "continuation"

    def step(self, index: int, label: str | None = None) -> AttributionTarget:
        """The single-token target of generated token `index` of a continuation."""
        if not self.is_continuation:
            raise InvalidOptionError(f"A {self.kind!r} target has no generated steps.")
        token_id = self.continuation_ids[index]
        return AttributionTarget("token", token_id, None, label or f"generated token {index + 1}")


def token_label(model, token_id: int) -> str:
    """A token as text with its quotes, so a leading space shows: "' Mary'"."""
    return repr(model.decode([token_id]))


def token_id_of(model, token: int | str, what: str = "target token") -> int:
    """An id in the vocabulary, from an id or a text that is exactly one token."""
    if isinstance(token, bool):
        raise InvalidOptionError(f"The {what} must be a token id or a token's text, not {token!r}.")
    if isinstance(token, int):
        if not 0 <= token < model.info.d_vocab:
            raise InvalidOptionError(
                f"The {what} id {token} is outside the vocabulary (0 to {model.info.d_vocab - 1}).")
        return token
    if isinstance(token, str):
        ids = model.token_ids(token)
        if len(ids) != 1:
            pieces = ", ".join(repr(model.decode([i])) for i in ids) or "no tokens"
            raise InvalidOptionError(
                f"The {what} {token!r} is {len(ids)} tokens ({pieces}); choose text that is "
                "exactly one token (GPT-2 words usually carry their leading space: ' Mary').")
        return ids[0]
    raise InvalidOptionError(f"The {what} must be a token id or a token's text, not {token!r}.")


def last_logits(model, token_ids: Sequence[int]) -> torch.Tensor:
    """Logits [d_vocab] at the last position of one plain forward pass, on the CPU."""
    tokens = torch.tensor([list(token_ids)], device=model.device)
    return model.logits(tokens)[0, -1].float().cpu()


def greedy_continuation(model, token_ids: Sequence[int], n_tokens: int) -> tuple[int, ...]:
    """The `n_tokens` the model writes after `token_ids`, taking its top token each time."""
    ids = list(token_ids)
    generated = []
    for _ in range(n_tokens):
        next_id = int(last_logits(model, ids).argmax())
        generated.append(next_id)
        ids.append(next_id)
    return tuple(generated)


def resolve_target(model, token_ids: Sequence[int], target=None) -> AttributionTarget:
    """Turn what the user asked to explain into an `AttributionTarget`.

    `None`: the predicted next token (one forward pass). An id or a one-token text (" Mary"): that
    token's logit. A pair `(a, b)`: logit[a] - logit[b]. `{"continuation": n}` (or the string
    "continuation:n"): the model's greedy continuation of n tokens (n forward passes), explained
    token by token. An `AttributionTarget` is returned as it is.
    """
    if isinstance(target, AttributionTarget):
        return target
    if target is None:
        predicted = int(last_logits(model, token_ids).argmax())
        return AttributionTarget("predicted", predicted, None, token_label(model, predicted))
    if isinstance(target, Mapping) or (isinstance(target, str) and target.startswith("continuation:")):
        n_tokens = continuation_length(target, len(token_ids), model.info.n_ctx)
        generated = greedy_continuation(model, token_ids, n_tokens)
        return AttributionTarget("continuation", None, None,
                                 f"continuation {model.decode(generated)!r}", generated)
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise InvalidOptionError(
                f"A contrast target is a pair (token, other token); got {len(target)} items.")
        token = token_id_of(model, target[0])
        other = token_id_of(model, target[1], "contrast token")
        if token == other:
            raise InvalidOptionError(
                f"The contrast compares {token_label(model, token)} with itself; choose two "
                "different tokens.")
        return AttributionTarget("contrast", token, other,
                                 f"{token_label(model, token)} - {token_label(model, other)}")
    token = token_id_of(model, target)
    return AttributionTarget("token", token, None, token_label(model, token))


def continuation_length(target: Mapping | str, n_prompt: int, n_ctx: int) -> int:
    """The number of tokens a continuation target asks for, checked against the context left."""
    if isinstance(target, str):
        raw = target.partition(":")[2].strip()
    else:
        unknown = sorted(set(target) - {"continuation"})
        if unknown or "continuation" not in target:
            raise InvalidOptionError(
                f"A continuation target is {{'continuation': n_tokens}}; got keys {sorted(target)}.")
        raw = target["continuation"]
    try:
        n_tokens = int(raw)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"The continuation length must be a whole number, not {raw!r}.") from None
    limit = min(MAX_CONTINUATION_TOKENS, n_ctx - n_prompt)
    if not 1 <= n_tokens <= limit:
        raise InvalidOptionError(
            f"The continuation length must be between 1 and {limit} tokens (at most "
            f"{MAX_CONTINUATION_TOKENS}, and the prompt plus continuation must fit the model's "
            f"{n_ctx}-token context); got {n_tokens}.")
    return n_tokens


def target_scalar(logits_last: torch.Tensor, target: AttributionTarget) -> torch.Tensor:
    """The quantity every method explains, from last-position logits [..., d_vocab] -> [...].

    logit[token] for a predicted or chosen token, logit[token] - logit[contrast] for a contrast.
    A continuation target is explained one generated token at a time: pass `target.step(i)`.
    """
    if target.is_continuation:
        raise InvalidOptionError(
            "A continuation target has one scalar per generated token: use target.step(index) "
            "with the prompt plus the tokens generated before it.")
    value = logits_last[..., target.token_id]
    if target.kind == "contrast":
        value = value - logits_last[..., target.contrast_id]
    return value


def target_value_of(model, token_ids: Sequence[int], target: AttributionTarget) -> float:
    """f(x): the target's value on `token_ids` from one plain forward pass (no gradients).

    For a continuation, the sum over generated tokens of each one's logit given the prompt and
    the generated tokens before it (one forward pass over prompt + continuation).
    """
    if not target.is_continuation:
        return float(target_scalar(last_logits(model, token_ids), target))
    ids = [*token_ids, *target.continuation_ids]
    tokens = torch.tensor([ids], device=model.device)
    logits = model.logits(tokens)[0].float().cpu()
    n_prompt = len(token_ids)
    steps = torch.arange(len(target.continuation_ids))
    chosen = logits[n_prompt - 1 + steps, torch.tensor(target.continuation_ids)]
    return float(chosen.sum())


def logits_from(bridge, input_ids: torch.Tensor, first: int) -> torch.Tensor:
    """Logits [batch, pos - first, d_vocab] of the positions from `first` on (negative counts
    from the end), the others never unembedded. Batched runs that read one position but
    unembed all of them hold batch x positions x vocabulary floats, several times over in a
    gradient pass: measured on GPT-2 small, ~1.1 GB for 64 masked 15-token rows."""
    last = len(bridge.blocks) - 1
    resid = bridge(input_ids, stop_at_layer=last)
    output = bridge.blocks[last](resid)
    resid = output[0] if isinstance(output, tuple) else output
    return bridge.unembed(bridge.ln_final(resid[:, first:]))
