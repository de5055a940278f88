"""What every request to the API passes before a handler sees it, as pure ASGI middleware.

Streamlit's server sets no body-size limit on custom routes, and a FastAPI middleware built on
`BaseHTTPMiddleware` would buffer and re-wrap every request; plain ASGI classes see the raw
messages, answer early with a short JSON body, and cost nothing on the paths they let through.
In order: a per-client rate limit (a token bucket per address, 429 + Retry-After), the optional
bearer token (401; compared in constant time, never logged or echoed), and the body-size limit
(413, from Content-Length when sent, else while the body is read).
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health",)  # answered without a token and outside the rate limit (probes)
MAX_TRACKED_CLIENTS = 10_000  # buckets kept; the least recently seen are forgotten first


async def send_json(send: Send, status: int, detail: str, error: str,
                    headers: dict[str, str] | None = None) -> None:
    """A complete JSON error response: {"detail": message, "error": kind}."""
    body = json.dumps({"detail": detail, "error": error}).encode()
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The path inside the mounted API (`/health` for `/api/health`)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def client_key(scope: Scope) -> str:
    """Who is asking, for the rate limit and the model queue: the peer's address. Behind a
    proxy every client shares the proxy's address (see the README)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class TokenBuckets:
    """`rate` requests a minute per client, in bursts of up to `rate`; thread-safe."""

    def __init__(self, rate_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(rate_per_minute)
        self.refill_per_s = rate_per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.refill_per_s)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.refill_per_s
            self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


class RateLimit:
    """429 with Retry-After (whole seconds) once a client is over its requests per minute."""

    def __init__(self, app: ASGIApp, rate_per_minute: int):
        self.app = app
        self.buckets = TokenBuckets(rate_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) not in OPEN_PATHS:
            wait = self.buckets.take(client_key(scope))
            if wait > 0:
                await send_json(send, 429, "Too many requests from this client: slow down and "
                                f"try again in {math.ceil(wait)} s.", "RateLimited",
                                {"Retry-After": str(math.ceil(wait))})
                return
        await self.app(scope, receive, send)


def bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerToken:
    """With a token configured, every path but the open ones needs `Authorization: Bearer <it>`."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) not in OPEN_PATHS:
            given = bearer_token(scope)
            if given is None or not hmac.compare_digest(given, self._expected):
                await send_json(send, 401, "This API needs its token: send the header "
                                "'Authorization: Bearer <token>'.", "Unauthorized",
                                {"WWW-Authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for a request body over `max_bytes`: refused from its Content-Length before reading,
    or, when the length is not declared (chunked), as soon as the bytes read pass the limit;
    a body within it is read whole and handed on unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def refuse(self, send: Send) -> None:
        await send_json(send, 413, f"The request body is over this API's limit of "
                        f"{self.max_bytes // 1024} KB.", "PayloadTooLarge")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope.get("headers", ())
                         if name == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self.refuse(send)
            return
        try:
            body = await self.read_body(receive)
        except BodyTooLarge:
            await self.refuse(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self.app(scope, replay, send)

    async def read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # disconnected: the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
