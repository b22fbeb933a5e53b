"""A slow OpenAI-compatible chat server for the fault tests: every answer is ``TOKENS`` words, one
each ``DELAY`` seconds, streamed or whole — long enough to kill a worker, or this server, mid-answer.

Run: ``python slow_openai.py PORT [DELAY] [TOKENS]``. Standard library only (a separate process the
tests kill with SIGKILL)."""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
TOKENS = int(sys.argv[3]) if len(sys.argv) > 3 else 60


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
        if self.path in ("/healthz", "/readyz"):
            self._json(200, {"status": "ok"})
        else:
            self._json(200, {"object": "list", "data": [{"id": "slow", "object": "model"}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        usage = {"prompt_tokens": 10, "completion_tokens": TOKENS, "total_tokens": 10 + TOKENS}
        words = [f"word{i} " for i in range(TOKENS)]
        if not request.get("stream"):
            time.sleep(DELAY * TOKENS)
            self._json(200, {"id": "c", "object": "chat.completion", "created": 0, "model": "slow",
                             "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                 "role": "assistant", "content": "".join(words)}}], "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "slow",
                    "choices": choices, **extra}
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
            self.wfile.flush()

        for word in words:
            chunk([{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}])
            time.sleep(DELAY)
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        chunk([], usage=usage)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
