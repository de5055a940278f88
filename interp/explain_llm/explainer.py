"""The AI explanation behind `interp.explain.explain`: ask Groq, check the reply, never fail.

`explain_with_llm` returns the model's reply when a key is set and Groq answers, and the offline
explanation otherwise, with a one-line reason; `stream_explanation` does the same while handing
out the reply's text as it arrives. Successful replies are cached by (result signature, model,
level), so asking again for the same result costs nothing; failures are remembered for a minute.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from interp.explain import Explanation, explain
from interp.explain_llm import client
from interp.explain_llm.cache import REPLY_CACHE, ReplyCache
from interp.explain_llm.explanation import LLMExplanation
from interp.explain_llm.failures import BadReplyError, LLMError, NoKeyError
from interp.explain_llm.grounding import KnownFacts, check_grounding, known_facts
from interp.explain_llm.key import ApiKey, ResolvedKey
from interp.explain_llm.prompt import LLMRequest, build_request, method_description
from interp.explain_llm.render import escape_reply
from interp.explain_llm.settings import LLMSettings

log = logging.getLogger(__name__)
BOS = "<|endoftext|>"


def offline_explanation(offline: Explanation, error: LLMError | None = None) -> LLMExplanation:
    """The offline explanation, labelled as such, with the reason the AI one is missing."""
    message = f"{error} Showing the offline explanation." if error is not None else ""
    return LLMExplanation(title=offline.title, text=offline.markdown, source="offline",
                          offline=offline, message=message,
                          failure=error.kind if error is not None else "")


def prompt_of(result) -> str:
    """The analysed prompt as text, from the result's tokens (without the BOS token)."""
    tokens = list(getattr(result, "tokens", ()) or ())
    if tokens and tokens[0] == BOS:
        tokens = tokens[1:]
    return "".join(str(token) for token in tokens)


def api_key(key: ResolvedKey | ApiKey | None) -> ApiKey | None:
    """The key itself from a resolved key or a key, or None when there is none."""
    found = key.key if isinstance(key, ResolvedKey) else key
    return found if found else None


@dataclass(frozen=True)
class Prepared:
    """What a call needs: the offline explanation, the request, what the reply may name, and the
    cache key."""

    offline: Explanation
    request: LLMRequest
    known: KnownFacts
    cache_key: tuple
    failure_key: tuple


def prepare(result, settings: LLMSettings, key: ApiKey | None, user_prompt: str | None,
            context: dict) -> Prepared:
    """Everything an explanation request needs: the offline text, the facts to ground against, the request."""
    offline = explain(result, **context)
    description = method_description(result)
    prompt = prompt_of(result) if user_prompt is None else user_prompt
    request = build_request(offline, description, settings.level, prompt)
    if key is not None:  # a key pasted into the prompt field must not travel either
        request = dataclasses.replace(request, user=key.redact(request.user))
    known = known_facts(offline, tokens=getattr(result, "tokens", ()) or (), prompt=prompt,
                        description=description)
    cache_key = (request.signature, settings.model, settings.level)
    failure_key = ("failed", *cache_key, key.fingerprint() if key is not None else "")
    return Prepared(offline=offline, request=request, known=known, cache_key=cache_key,
                    failure_key=failure_key)


def remembered(prepared: Prepared, settings: LLMSettings,
               cache: ReplyCache | None) -> LLMExplanation | None:
    """A cached reply, or a failure of this key on this request less than `failure_memo_s` old."""
    if cache is None:
        return None
    found = cache.get(prepared.cache_key)
    if found is None and settings.failure_memo_s > 0:
        found = cache.get(prepared.failure_key, max_age_s=settings.failure_memo_s)
    return None if found is None else dataclasses.replace(found, from_cache=True)


def failed(prepared: Prepared, error: LLMError, cache: ReplyCache | None) -> LLMExplanation:
    """The offline explanation labelled with why the AI one failed (cached when a cache is given)."""
    log.info("AI explanation unavailable (%s): %s", error.kind, error)
    explanation = offline_explanation(prepared.offline, error)
    if cache is not None:
        cache.put(prepared.failure_key, explanation)
    return explanation


def ai_explanation(prepared: Prepared, text: str, settings: LLMSettings, model: str) -> LLMExplanation:
    """An AI explanation of `text` with its grounding report."""
    return LLMExplanation(title=prepared.offline.title, text=text, source="groq",
                          offline=prepared.offline, grounding=check_grounding(text, prepared.known),
                          model=model, level=settings.level)


def redacted(chunks: Iterator[str], key: ApiKey) -> Iterator[str]:
    """`chunks` with every copy of the key replaced, even one split across chunks: a chunk's end
    that could be the start of the key is held back until the next chunk settles it."""
    secret = key.reveal()
    held = ""
    for chunk in chunks:
        held = key.redact(held + chunk)
        keep = next((n for n in range(min(len(secret) - 1, len(held)), 0, -1)
                     if held.endswith(secret[:n])), 0)
        if len(held) > keep:
            yield held[:len(held) - keep]
            held = held[len(held) - keep:]
    if held:
        yield held


def unexpected(error: Exception) -> LLMError:
    # A failure inside the client we did not foresee still ends in the offline text, not a traceback.
    """An unforeseen failure of the client, as a bad-reply error."""
    return BadReplyError(f"Groq's reply could not be used ({type(error).__name__}).")


def explain_with_llm(result, settings: LLMSettings | None = None,
                     key: ResolvedKey | ApiKey | None = None, *, user_prompt: str | None = None,
                     cache: ReplyCache | None = REPLY_CACHE,
                     sleep: Callable[[float], None] = time.sleep, **context) -> LLMExplanation:
    """Groq's explanation of `result` (checked against its facts), or the offline one with the
    reason when there is no key or the call fails. `context` goes to the offline explainer
    (e.g. `agreement=` for patching); `user_prompt` defaults to the result's own tokens."""
    settings = settings or LLMSettings()
    secret = api_key(key)
    prepared = prepare(result, settings, secret, user_prompt, context)
    if secret is None:
        return offline_explanation(prepared.offline, NoKeyError())
    known = remembered(prepared, settings, cache)
    if known is not None:
        return known
    try:
        reply = client.complete(prepared.request, settings, secret, sleep=sleep)
    except LLMError as error:
        return failed(prepared, error, cache)
    except Exception as error:  # noqa: BLE001 - see `unexpected`
        return failed(prepared, unexpected(error), cache)
    # A reply that echoes the key (a prompt injection asking for it) must not show it.
    explanation = ai_explanation(prepared, secret.redact(reply.text), settings, reply.model)
    if cache is not None:
        cache.put(prepared.cache_key, explanation)
    return explanation


class ExplanationStream:
    """The reply's text chunks as they arrive, escaped for Markdown (hand it to
    `st.write_stream`); afterwards `result()` is the `LLMExplanation` to show in their place
    (the checked reply, or the offline text when the call failed, even half way)."""

    def __init__(self, chunks: Iterator[str] | None, finish: Callable[[str], LLMExplanation],
                 fallback: Callable[[LLMError], LLMExplanation],
                 ready: LLMExplanation | None = None):
        self._chunks = chunks
        self._finish = finish
        self._fallback = fallback
        self._result = ready
        self._iterator = self._run()

    def _run(self) -> Iterator[str]:
        if self._chunks is None:
            if self._result is not None and self._result.is_ai:
                yield escape_reply(self._result.text)
            return
        parts = []
        try:
            for chunk in self._chunks:
                parts.append(chunk)
                yield escape_reply(chunk)
        except LLMError as error:
            self._result = self._fallback(error)
            return
        except Exception as error:  # noqa: BLE001 - see `unexpected`
            self._result = self._fallback(unexpected(error))
            return
        text = client.strip_thinking("".join(parts))
        if not text:
            self._result = self._fallback(BadReplyError("Groq's reply was empty."))
            return
        self._result = self._finish(text)

    def __iter__(self) -> Iterator[str]:
        return self._iterator

    def result(self) -> LLMExplanation:
        """The final explanation (reads the rest of the stream first if it is not done)."""
        for _ in self._iterator:
            pass
        assert self._result is not None  # the stream sets it before it ends
        return self._result


def stream_explanation(result, settings: LLMSettings | None = None,
                       key: ResolvedKey | ApiKey | None = None, *, user_prompt: str | None = None,
                       cache: ReplyCache | None = REPLY_CACHE,
                       sleep: Callable[[float], None] = time.sleep, **context) -> ExplanationStream:
    """`explain_with_llm`, streamed: iterate the returned object for the reply's escaped text
    chunks, then call `.result()`. No key or a cached reply means no network call at all."""
    settings = settings or LLMSettings()
    secret = api_key(key)
    prepared = prepare(result, settings, secret, user_prompt, context)

    def fallback(error: LLMError) -> LLMExplanation:
        return failed(prepared, error, cache)

    def finish(text: str) -> LLMExplanation:
        explanation = ai_explanation(prepared, text, settings, settings.model)
        if cache is not None:
            cache.put(prepared.cache_key, explanation)
        return explanation

    if secret is None:
        return ExplanationStream(None, finish, fallback,
                                 ready=offline_explanation(prepared.offline, NoKeyError()))
    known = remembered(prepared, settings, cache)
    if known is not None:
        return ExplanationStream(None, finish, fallback, ready=known)
    chunks = redacted(client.stream_reply(prepared.request, settings, secret, sleep=sleep), secret)
    return ExplanationStream(chunks, finish, fallback)
