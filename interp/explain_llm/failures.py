"""Why an AI explanation could not be had, one typed error per cause.

Each message is one line that says what happened and what to do; it never holds the key. The
caller catches `LLMError`, shows the message and the offline explanation in the reply's place.
"""

from __future__ import annotations

from interp.errors import InterpError


def attempts_phrase(attempts: int) -> str:
    """The phrase "1 attempt" or "N attempts"."""
    return f"{attempts} attempt{'s' if attempts != 1 else ''}"


class LLMError(InterpError):
    """Base of every reason an AI explanation failed; `kind` names the reason for code."""

    kind = "error"


class NoKeyError(LLMError):
    """No Groq API key is set anywhere the app looks."""
    kind = "no_key"

    def __init__(self):
        super().__init__("No Groq API key is set (app secrets, the GROQ_API_KEY environment "
                         "variable or the sidebar field).")


class BadKeyError(LLMError):
    """Groq refused the API key (an HTTP 401 or 403)."""
    kind = "bad_key"

    def __init__(self, status: int):
        super().__init__(f"Groq refused the API key (HTTP {status}): check the key, or set a new "
                         "one in the sidebar.")


class RateLimitedError(LLMError):
    """Groq's rate limit was hit on every attempt."""
    kind = "rate_limited"

    def __init__(self, retry_after_s: float | None, attempts: int):
        wait = f" Groq asks to wait {retry_after_s:.0f} s." if retry_after_s else ""
        super().__init__(f"Groq's rate limit was hit ({attempts_phrase(attempts)}).{wait} Try "
                         "again in a minute.")
        self.retry_after_s = retry_after_s


class LLMTimeoutError(LLMError):
    """Groq did not answer within the timeout."""
    kind = "timeout"

    def __init__(self, timeout_s: float):
        super().__init__(f"Groq did not answer within {timeout_s:g} s. Try again, or pick a "
                         "faster model.")


class ServerError(LLMError):
    """Groq's server failed (HTTP 5xx) on every attempt."""
    kind = "server_error"

    def __init__(self, status: int, attempts: int):
        super().__init__(f"Groq's server failed (HTTP {status}, {attempts_phrase(attempts)}). "
                         "Try again later.")
        self.status = status


class NoNetworkError(LLMError):
    """Groq could not be reached at all."""
    kind = "no_network"

    def __init__(self):
        super().__init__("Groq can't be reached (no network, or the connection was refused).")


class TruncatedReplyError(LLMError):
    """Groq's reply stopped at the token limit, so it is not shown."""
    kind = "truncated"

    def __init__(self, limit: int):
        super().__init__(f"Groq's reply was cut off at the token limit ({limit} tokens), so it is "
                         "not shown. Try again, or a model that writes shorter replies.")


class RequestRefusedError(LLMError):
    """Any other refusal (HTTP 400, 404, 413, 422: e.g. a model id Groq does not serve)."""

    kind = "refused"

    def __init__(self, status: int | None, detail: str):
        where = f"HTTP {status}" if status else "no status"
        super().__init__(f"Groq refused the request ({where}): {detail}")


class BadReplyError(LLMError):
    """The reply came back but holds no text, or the stream broke off."""

    kind = "bad_reply"
