"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests over real HTTP.

Tests script its answers in order (a JSON reply, an SSE stream, an error status with headers, a
delay) and read back what each request carried. It runs in a daemon thread, answers only on the
loopback interface and stops itself when the test ends, cutting any delayed answer short.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Scripted:
    """One answer: `status` with `body` (JSON), or `events` sent as an SSE stream, after `delay_s`
    (and `stall_s` after the first event, to cut a stream off half way)."""

    status: int = 200
    body: dict | None = None
    events: list[dict] | None = None
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0
    stall_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict
    body: dict
    at: float


def completion(text: str, finish_reason: str = "stop", model: str = "fake-model") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


def chunk(text: str | None, finish_reason: str | None = None, model: str = "fake-model") -> dict:
    delta = {"role": "assistant", "content": text} if text is not None else {}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def error_body(message: str, code: str = "error") -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


class FakeChatServer:
    """Serves scripted answers on http://127.0.0.1:<free port>; `received` lists the requests."""

    def __init__(self):
        self.received: list[Received] = []
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *answers: Scripted) -> None:
        with self._lock:
            self._script.extend(answers)

    def start(self) -> FakeChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Scripted:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return Scripted(status=500, body=error_body("no scripted answer left"))

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length) if length else b"{}"
                server.received.append(Received(path=self.path, headers=dict(self.headers),
                                                body=json.loads(raw or b"{}"), at=time.monotonic()))
                answer = server._next()
                if answer.delay_s and server._stopping.wait(answer.delay_s):
                    return
                try:
                    self._answer(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _answer(self, answer: Scripted):
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.events is not None:
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for index, event in enumerate(answer.events):
                        if index == 1 and answer.stall_s and server._stopping.wait(answer.stall_s):
                            return
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    return
                payload = json.dumps(answer.body or {}).encode()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
