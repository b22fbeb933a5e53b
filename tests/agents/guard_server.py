"""A local OpenAI-compatible server standing in for a guard model (and, where a test needs one, the chat
model beside it, or a vision backend whose requests are checked): the protocol peer of the tests that
talk to a remote model, since no guard or vision model ships in a Python package. It answers each
chat completion with ``reply(request)`` — a Prompt Guard label, a Llama Guard verdict, an answer — or
misbehaves as told: an error status, silence past the client's timeout, a body that is no chat
completion. It keeps every request. Standard library only, on a thread of the test's process:
``with FakeGuard(reply) as guard: ... guard.url``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Reply = Callable[[dict[str, Any]], str]
MAX_BODY = 64 * 1024 * 1024


def last_user_text(request: dict[str, Any]) -> str:
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


class FakeGuard:
    def __init__(self, reply: Reply | str = "BENIGN", *, status: int = 200, delay_s: float = 0.0,
                 raw: bytes | None = None) -> None:
        self.reply: Reply = reply if callable(reply) else (lambda _req, text=reply: text)
        self.status = status
        self.delay_s = delay_s
        self.raw = raw
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeGuard:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                if size > MAX_BODY:
                    self._send(413, b'{"error": {"message": "request too large"}}')
                    return
                request = json.loads(self.rfile.read(size) or b"{}")
                with fake._lock:
                    fake.requests.append(request)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fake.raw is not None:
                    self._send(fake.status, fake.raw)
                    return
                if fake.status != 200:
                    self._send(fake.status, b'{"error": {"message": "the guard broke"}}')
                    return
                text = fake.reply(request)
                usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
                if request.get("stream"):
                    self._stream(request, text, usage)
                    return
                self._send(200, json.dumps({
                    "id": "g", "object": "chat.completion", "created": 0, "model": request.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": usage}).encode())

            def _stream(self, request: dict[str, Any], text: str, usage: dict[str, int]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {"id": "g", "object": "chat.completion.chunk", "created": 0,
                        "model": request.get("model")}
                delta = {"role": "assistant", "content": text}
                chunks = [{"index": 0, "delta": delta, "finish_reason": None}]
                for body in ({**base, "choices": chunks},
                             {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                             {**base, "choices": [], "usage": usage}):
                    self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
