"""Checks that run before routing: the ``Host`` header and the size of the body.

Both answer in the API's one JSON error shape. They are plain ASGI middleware so that a body is
refused as it streams in, without being read whole.
"""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.platform.api.errors import error_body

__all__ = ["BodyLimitMiddleware", "HostCheckMiddleware"]


async def _reply(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps(error_body(kind, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HostCheckMiddleware:
    """Refuses requests whose ``Host`` is not one this server is bound to or configured for: a
    browser tricked by DNS rebinding sends the attacker's name, which is not on the list."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}
        self.any = "*" in self.allowed

    def _ok(self, host: str) -> bool:
        if self.any:
            return True
        host = host.strip().lower()
        # IPv6 literals come bracketed ("[::1]:8321"); anything else is name[:port].
        name = host.split("]", 1)[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
        return name in self.allowed or any(
            a.startswith("*.") and name.endswith(a[1:]) for a in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for key, value in scope.get("headers", []):
            if key == b"host":
                host = value.decode("latin-1")
                break
        if not self._ok(host):
            await _reply(send, 400, "invalid_host",
                         f"this server does not answer to host {host[:100]!r}; add it to "
                         "CORRAL_ALLOWED_HOSTS if it is yours")
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes (``upload_limit`` for multipart uploads): by
    ``Content-Length`` before reading, or as soon as a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.upload_limit if multipart else self.limit
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reply(send, 413, "payload_too_large",
                         f"the request body is {int(length):,} bytes; the limit is {limit:,}")
            return
        seen = 0
        started = False
        over = False

        async def limited_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if over:
                # The app may catch _TooLarge while reading the body and answer its own error (FastAPI
                # makes it a 400); the client gets the 413 instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reply(send, 413, "payload_too_large",
                                 f"the request body passed the limit of {limit:,} bytes")
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge):  # raised to stop the app reading; answered below
            await self.app(scope, limited_receive, tracking_send)
        if over and not started:
            await _reply(send, 413, "payload_too_large",
                         f"the request body passed the limit of {limit:,} bytes")
