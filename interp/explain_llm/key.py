"""Where the Groq API key comes from, and a holder that never shows it.

The key is looked up in the app's secrets, then the `GROQ_API_KEY` environment variable, then a
value the user typed for this session only. It travels inside `ApiKey`, whose repr and str hide
it and which refuses to be pickled, so logs, reprs, caches and exports can't carry it by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as random_bytes
from collections.abc import Mapping
from dataclasses import dataclass

KEY_NAME = "GROQ_API_KEY"
KEY_SOURCES = ("secrets", "environment", "this session")
HIDDEN = "ApiKey(hidden)"
# A fresh salt per process: a fingerprint tells keys apart here and can't be looked up anywhere.
FINGERPRINT_SALT = random_bytes.token_bytes(16)


class ApiKey:
    """An API key that only `reveal()` gives back; printing, formatting or pickling it can't."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value).strip()

    def reveal(self) -> str:
        """The key itself, for the one place that sends it: the client's constructor."""
        return self._value

    def fingerprint(self) -> str:
        """A salted digest that tells two keys apart within this process (for cache keys)."""
        return hmac.new(FINGERPRINT_SALT, self._value.encode(), hashlib.sha256).hexdigest()[:16]

    def redact(self, text: str) -> str:
        """`text` with every copy of the key replaced (for text a server echoes back)."""
        return text.replace(self._value, "[key hidden]") if self._value else text

    def __repr__(self) -> str:
        return HIDDEN

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return HIDDEN

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]  # a key is no dictionary key: its hash would outlive it in caches

    def __reduce_ex__(self, protocol):
        raise TypeError("An API key is never pickled (caches and exports must not hold it).")

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class ResolvedKey:
    """A key and where it was found: "secrets", "environment" or "this session"."""

    key: ApiKey
    source: str

    @property
    def label(self) -> str:
        """What a page may show about the key: that it is set, and from where."""
        return f"key set (from {self.source})"


def secret_value(secrets: Mapping | None) -> str | None:
    # Streamlit's secrets raise (FileNotFoundError, KeyError) when no secrets file exists.
    """GROQ_API_KEY from Streamlit's secrets, or None when there are no secrets or no such entry."""
    if secrets is None:
        return None
    try:
        value = secrets.get(KEY_NAME)
    except (KeyError, FileNotFoundError, OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def resolve_key(secrets: Mapping | None = None, session_value: str | ApiKey | None = None,
                environ: Mapping[str, str] | None = None) -> ResolvedKey | None:
    """The Groq key from `secrets["GROQ_API_KEY"]`, else the environment, else `session_value`
    (a key typed in for this session); None when none of them holds a non-blank key."""
    environ = os.environ if environ is None else environ
    session = session_value.reveal() if isinstance(session_value, ApiKey) else session_value
    candidates = ((secret_value(secrets), "secrets"), (environ.get(KEY_NAME), "environment"),
                  (session, "this session"))
    for value, source in candidates:
        if value and value.strip():
            return ResolvedKey(key=ApiKey(value), source=source)
    return None
