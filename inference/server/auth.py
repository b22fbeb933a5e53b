"""An ASGI guard demanding ``Authorization: Bearer <key>`` when the server is given a key.

Every path but ``/healthz`` and ``/readyz`` (the probes) needs it, ``/metrics`` included: model names and
traffic are not for anyone who can reach the port. The key is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from corral.inference.server.errors import error_body

__all__ = ["ApiKeyGuard"]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


class ApiKeyGuard:
    """401 in OpenAI's error shape for a request without the key (or with another one)."""

    def __init__(self, app: Any, api_key: str) -> None:
        if not api_key:
            raise ValueError("ApiKeyGuard needs a non-empty key")
        self.app = app
        self._digest = hashlib.sha256(api_key.encode()).digest()

    def _allowed(self, scope: dict[str, Any]) -> bool:
        if scope.get("path") in PUBLIC_PATHS:
            return True
        header = b""
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        # Digests of equal length, compared in constant time: neither the key nor its length leaks.
        sent = hashlib.sha256(token.strip()).digest()
        return hmac.compare_digest(sent, self._digest) and scheme.lower() == b"bearer"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(
            "missing or invalid API key: send 'Authorization: Bearer <key>'", "invalid_request_error",
            code="invalid_api_key",
        )).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="corral-inference"')]})
        await send({"type": "http.response.body", "body": body})
