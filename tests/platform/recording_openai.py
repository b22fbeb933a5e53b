"""A local OpenAI-compatible chat server that keeps every request body it receives and answers each
with one fixed reply, whole or streamed: the protocol peer a test checks what a remote backend was
sent against (the images of a vision request, for one). Standard library only, served on a thread of
the test's process; ``with RecordingOpenAI(reply) as server:`` serves it on a free port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_BODY = 64 * 1024 * 1024


class RecordingOpenAI:
    def __init__(self, reply: str, model: str = "recording") -> None:
        self.reply = reply
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL a client configures (``…/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> RecordingOpenAI:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": owner.model, "object": "model"}]})

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                if size > MAX_BODY:
                    self._json(413, {"error": {"message": "request too large"}})
                    return
                request = json.loads(self.rfile.read(size) or b"{}")
                with owner._lock:
                    owner.requests.append(request)
                usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
                if not request.get("stream"):
                    self._json(200, {"id": "c", "object": "chat.completion", "created": 0,
                                     "model": owner.model, "usage": usage,
                                     "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                         "role": "assistant", "content": owner.reply}}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for choices, extra in (
                        ([{"index": 0, "delta": {"role": "assistant", "content": owner.reply},
                           "finish_reason": None}], {}),
                        ([{"index": 0, "delta": {}, "finish_reason": "stop"}], {}),
                        ([], {"usage": usage})):
                    body = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                            "model": owner.model, "choices": choices, **extra}
                    self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
