"""A bounded, thread-safe memory of AI explanations, so a rerun never asks Groq again.

Keys are (result signature, model id, level): the signature is a digest of everything the request
says about the result, so two results with the same facts share a reply. The oldest-used entry
goes first when the cache is full. A failure is remembered briefly too (with a salted digest of the
key, never the key), so that a page's reruns don't wait on a failing Groq again and again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

DEFAULT_MAX_ENTRIES = 128


class ReplyCache:
    """Least-recently-used cache of at most `max_entries` explanations, safe across sessions."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError(f"A cache holds at least one entry; got max_entries={max_entries}.")
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, max_age_s: float | None = None):
        """The value stored under `key`, or None (also when it is older than `max_age_s`)."""
        with self._lock:
            if key not in self._entries:
                return None
            stored_at, value = self._entries[key]
            if max_age_s is not None and time.monotonic() - stored_at > max_age_s:
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: tuple, value) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"ReplyCache({len(self)} of {self.max_entries} entries)"


REPLY_CACHE = ReplyCache()
