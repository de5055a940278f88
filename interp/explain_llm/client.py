"""Groq chat completions through the official `groq` client, with every failure typed.

One call asks for a whole reply (`complete`) or a stream of text chunks (`stream_reply`). Rate
limits (429) and server errors (5xx) are retried a bounded number of times, waiting what the
server's `retry-after` asks; the client's own retries are off so that this is the only policy.
Every other failure becomes one `LLMError` whose message never holds the key.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import groq
import httpx

from interp.explain_llm.failures import (
    BadKeyError,
    BadReplyError,
    LLMError,
    LLMTimeoutError,
    NoNetworkError,
    RateLimitedError,
    RequestRefusedError,
    ServerError,
    TruncatedReplyError,
)
from interp.explain_llm.key import ApiKey
from interp.explain_llm.prompt import LLMRequest
from interp.explain_llm.settings import LLMSettings

THINKING = re.compile(r"<think>.*?(</think>|\Z)", re.DOTALL)
MAX_DETAIL_CHARS = 200


@dataclass(frozen=True)
class Reply:
    """A finished reply: its text and the model that wrote it."""

    text: str
    model: str


def reasoning_options(model: str) -> dict:
    """Keep reasoning models' thinking short and out of the text (Groq's documented options)."""
    if model.startswith("openai/gpt-oss"):
        return {"reasoning_effort": "low", "include_reasoning": False}
    if model.startswith("qwen/qwen3"):
        return {"reasoning_effort": "none"}
    return {}


def strip_thinking(text: str) -> str:
    """A reply with any reasoning (thinking) sections removed."""
    return THINKING.sub("", text).strip()


def retry_after(response: httpx.Response | None) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, or `retry-after` in seconds or as a date."""
    if response is None:
        return None
    headers = response.headers
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if email.utils.parsedate_tz(value) else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def one_line(text: str, key: ApiKey) -> str:
    """`text` on one line, the key redacted, cut to a short length."""
    line = " ".join(key.redact(str(text)).split())
    return line if len(line) <= MAX_DETAIL_CHARS else line[:MAX_DETAIL_CHARS - 1] + "…"


def server_detail(error: groq.APIStatusError, key: ApiKey) -> str:
    """The message of a refused request's error body, the key redacted."""
    body = error.body
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    return one_line(message or error.response.reason_phrase or "no detail", key)


def typed_error(error: Exception, settings: LLMSettings, key: ApiKey, attempts: int) -> LLMError:
    """The `LLMError` for a client or transport exception (a timeout is checked before the
    connection errors it is a kind of)."""
    if isinstance(error, (groq.APITimeoutError, httpx.TimeoutException)):
        return LLMTimeoutError(settings.timeout_s)
    if isinstance(error, (groq.APIConnectionError, httpx.TransportError)):
        return NoNetworkError()
    if isinstance(error, groq.APIStatusError):
        status = error.status_code
        if status in (401, 403):
            return BadKeyError(status)
        if status == 429:
            return RateLimitedError(retry_after(error.response), attempts)
        if status >= 500:
            return ServerError(status, attempts)
        return RequestRefusedError(status, server_detail(error, key))
    if isinstance(error, groq.APIError):  # an error event inside a stream
        return BadReplyError(f"Groq's reply stream reported an error: {one_line(error.message, key)}")
    return BadReplyError(f"Groq's reply could not be read ({type(error).__name__}).")


def retryable(error: Exception) -> bool:
    """Whether an error is worth retrying: a rate limit (429) or a server error (5xx)."""
    return isinstance(error, groq.APIStatusError) and (
        error.status_code == 429 or error.status_code >= 500)


def with_retries(call: Callable[[], Any], settings: LLMSettings, key: ApiKey,
                 sleep: Callable[[float], None]) -> Any:
    """`call()`, retried on 429 and 5xx: after `retry-after` when the server sends one (giving up
    at once when it asks for more than `max_retry_wait_s`), else after a doubling backoff."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except groq.GroqError as error:
            if not retryable(error) or attempt > settings.max_retries:
                raise typed_error(error, settings, key, attempt) from None
            wait = retry_after(error.response)  # type: ignore[attr-defined]  # retryable(): an APIStatusError
            if wait is None:
                wait = settings.backoff_s * 2 ** (attempt - 1)
            if wait > settings.max_retry_wait_s:
                raise typed_error(error, settings, key, attempt) from None
            sleep(wait)
        except httpx.HTTPError as error:
            raise typed_error(error, settings, key, attempt) from None


def make_client(settings: LLMSettings, key: ApiKey) -> groq.Groq:
    """A Groq client for these settings that does no retries of its own."""
    return groq.Groq(api_key=key.reveal(), base_url=settings.base_url, max_retries=0,
                     timeout=httpx.Timeout(settings.timeout_s))


def request_options(request: LLMRequest, settings: LLMSettings) -> dict:
    """The chat-completion request's arguments for these settings."""
    return dict(model=settings.model, messages=request.messages(),
                max_completion_tokens=settings.max_completion_tokens,
                temperature=settings.temperature, **reasoning_options(settings.model))


def complete(request: LLMRequest, settings: LLMSettings, key: ApiKey,
             sleep: Callable[[float], None] = time.sleep) -> Reply:
    """The whole reply; raises an `LLMError` on any failure, `TruncatedReplyError` when the
    token limit cut it off."""
    with make_client(settings, key) as client:
        completion = with_retries(
            lambda: client.chat.completions.create(**request_options(request, settings)),
            settings, key, sleep)
    if not completion.choices:
        raise BadReplyError("Groq's reply held no answer.")
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise TruncatedReplyError(settings.max_completion_tokens)
    text = strip_thinking(choice.message.content or "")
    if not text:
        raise BadReplyError("Groq's reply was empty.")
    return Reply(text=text, model=completion.model or settings.model)


def stream_reply(request: LLMRequest, settings: LLMSettings, key: ApiKey,
                 sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """The reply's text chunks as they arrive; raises an `LLMError` (possibly after some
    chunks) on any failure, `TruncatedReplyError` at the end when the token limit cut it off."""
    with make_client(settings, key) as client:
        chunks = with_retries(
            lambda: client.chat.completions.create(stream=True,
                                                   **request_options(request, settings)),
            settings, key, sleep)
        finish_reason = None
        try:
            with chunks:
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    finish_reason = choice.finish_reason or finish_reason
        except (groq.GroqError, httpx.HTTPError) as error:
            raise typed_error(error, settings, key, attempts=1) from None
    if finish_reason == "length":
        raise TruncatedReplyError(settings.max_completion_tokens)
    if finish_reason is None:
        raise BadReplyError("Groq's reply stream ended before the reply was complete.")
