"""Text generation from a loaded model: greedy or sampled, streamed token by token.

Each step runs the Hugging Face model inside the bridge on the newest token only, reusing the keys
and values of the earlier ones (the KV cache), then picks the next token: the most likely one at
temperature 0, else a draw from the softmax of logits / temperature restricted to the nucleus (the
smallest set of most likely tokens whose probability reaches `top_p`, Holtzman et al. 2020). The
draws come from a private random generator seeded by `seed`, so a seed always gives the same text
and other sessions' sampling never shifts it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError

DEFAULT_STOP = ("\n",)
CHAT_ROLES = ("User", "Assistant")


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token: its id, its text, and the model's own probability of it (the softmax
    of its logits at temperature 1, whatever the sampling settings)."""

    token_id: int
    text: str
    probability: float


def check_sampling(max_new_tokens: int, temperature: float, top_p: float, n_ctx: int) -> None:
    """Refuse sampling settings outside their ranges, saying which and why."""
    if not 1 <= max_new_tokens < n_ctx:
        raise InvalidOptionError(
            f"max_new_tokens must be between 1 and {n_ctx - 1} (the model's window is {n_ctx} "
            f"tokens); got {max_new_tokens}.")
    if not temperature >= 0:
        raise InvalidOptionError(f"temperature must be 0 (greedy) or positive; got {temperature}.")
    if not 0 < top_p <= 1:
        raise InvalidOptionError(f"top_p must be in (0, 1]; got {top_p}.")


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """`logits` with every token outside the top-`top_p` nucleus set to -inf (1-D)."""
    if top_p >= 1:
        return logits
    ascending, order = torch.sort(logits)
    # A token is dropped when the tokens less likely than it, itself included, hold no more than
    # 1 - top_p of the mass; the most likely token always stays.
    dropped = torch.softmax(ascending, dim=-1).cumsum(dim=-1) <= 1 - top_p
    dropped[-1] = False
    return logits.masked_fill(dropped.scatter(0, order, dropped), float("-inf"))


class Generation:
    """A generation in progress: iterate it to get `GeneratedToken`s as the model writes them.

    `dropped_tokens` counts prompt tokens left out from the left to fit the model's window, and
    `note` says so where the user can see it. `tokens` and `text` grow as the iteration goes;
    `stop_reason` is "newline" (or "stop '<string>'"), "end_of_text" or "limit" once it ends.
    Each step holds the model's lock only for its own forward pass.
    """

    def __init__(self, model, prompt_ids: list[int], dropped_tokens: int, max_new_tokens: int,
                 temperature: float, top_p: float, seed: int, stop: tuple[str, ...]):
        self.model = model
        self.prompt_ids = tuple(prompt_ids)
        self.dropped_tokens = dropped_tokens
        self.note = None if not dropped_tokens else (
            f"The input is longer than the model's {model.info.n_ctx}-token window (with room for "
            f"{max_new_tokens} new tokens): its first {dropped_tokens} tokens were left out.")
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.stop = stop
        self.tokens: list[GeneratedToken] = []
        self.stop_reason: str | None = None
        self._random = torch.Generator(device=model.device).manual_seed(int(seed))
        self._steps = self._run()

    @property
    def text(self) -> str:
        return "".join(token.text for token in self.tokens)

    def __iter__(self) -> Iterator[GeneratedToken]:
        return self._steps

    def __next__(self) -> GeneratedToken:
        return next(self._steps)

    def text_stream(self) -> Iterator[str]:
        """The text of each new token, for `st.write_stream`."""
        for token in self:
            yield token.text

    def run(self) -> Generation:
        """Generate to the end; returns self."""
        for _ in self:
            pass
        return self

    def _run(self) -> Iterator[GeneratedToken]:
        eos = self.model.tokenizer.eos_token_id
        past, fed = None, torch.tensor([self.prompt_ids], device=self.model.device)
        while len(self.tokens) < self.max_new_tokens:
            logits, past = self._step(fed, past)
            token_id = self._choose(logits)
            if token_id == eos:
                self.stop_reason = "end_of_text"
                return
            token = GeneratedToken(token_id, self.model.decode([token_id]),
                                   float(torch.softmax(logits.double(), dim=-1)[token_id]))
            met = self._stop_met(token.text)
            if met is not None:
                stop_at, stop = met
                if stop_at:
                    token = GeneratedToken(token_id, token.text[:stop_at], token.probability)
                    self.tokens.append(token)
                    yield token
                self.stop_reason = "newline" if stop == "\n" else f"stop {stop!r}"
                return
            self.tokens.append(token)
            yield token
            fed = torch.tensor([[token_id]], device=self.model.device)
        self.stop_reason = "limit"

    @torch.no_grad()
    def _step(self, fed: torch.Tensor, past):
        with self.model.exclusive() as bridge:
            out = bridge.original_model(fed, past_key_values=past, use_cache=True)
        return out.logits[0, -1].float(), out.past_key_values

    def _choose(self, logits: torch.Tensor) -> int:
        if self.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(nucleus(logits / self.temperature, self.top_p), dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._random))

    def _stop_met(self, piece: str) -> tuple[int, str] | None:
        """The first stop string the text reaches with `piece`, and where in `piece` it begins
        (0 when it began in earlier tokens)."""
        text = self.text + piece
        found = [(text.find(stop), stop) for stop in self.stop if stop and stop in text]
        if not found:
            return None
        start, stop = min(found)
        return max(0, start - len(self.text)), stop


def generate(model, prompt: str, max_new_tokens: int = 40, temperature: float = 1.0,
             top_p: float = 1.0, seed: int = 0, stop: Sequence[str] = DEFAULT_STOP) -> Generation:
    """Continue `prompt` (the BOS token first, as everywhere in the workbench): a `Generation` to
    iterate. Temperature 0 is greedy decoding. An input too long for the model's window keeps its
    last tokens, leaving room for `max_new_tokens`, and the Generation's `note` says so."""
    n_ctx = model.info.n_ctx
    check_sampling(max_new_tokens, temperature, top_p, n_ctx)
    ids = model.to_tokens(prompt)[0].tolist()
    room = n_ctx - max_new_tokens
    dropped = max(0, len(ids) - room)
    kept = ids[dropped:]
    return Generation(model, kept, dropped, max_new_tokens, float(temperature), float(top_p),
                      int(seed), tuple(stop))


def chat_prompt(turns: Sequence[tuple[str, str]], next_role: str = "Assistant") -> str:
    """A conversation as the plain text a base model continues: "User: ...\\nAssistant: ..."
    lines, ending with `next_role` and a colon for the model to answer."""
    for role, _ in turns:
        if role not in CHAT_ROLES:
            raise InvalidOptionError(f"Unknown chat role {role!r}; valid: {', '.join(CHAT_ROLES)}.")
    if next_role not in CHAT_ROLES:
        raise InvalidOptionError(
            f"Unknown chat role {next_role!r}; valid: {', '.join(CHAT_ROLES)}.")
    lines = [f"{role}: {' '.join(text.split())}" for role, text in turns]
    return "\n".join([*lines, f"{next_role}:"])
