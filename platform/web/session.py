"""The dashboard's session: a signed cookie naming the signed-in key, and the CSRF token tied to it.

The cookie (``corral_session``: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` over https) holds a random
session id, the key's id and prefix — never its secret — and is signed with ``CORRAL_SECRET_KEY``
(itsdangerous), valid for :data:`MAX_AGE_S`. Every request looks the key up again, so a revoked or
expired key ends its sessions at once. ``Lax`` rather than ``Strict``: links into the dashboard from
elsewhere (the Slack bot's citations) must arrive signed in; forms are guarded by the CSRF token.

A visitor who is not signed in gets an anonymous session (no key) on the first page, so that the
sign-in form carries a CSRF token too. The token is an HMAC of the session id: a page of this
dashboard can show it, another site cannot compute it, and signing in starts a new session id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from corral.core.config import get_settings

__all__ = ["COOKIE", "MAX_AGE_S", "WebSession", "clear_session", "csrf_matches", "csrf_token",
           "new_session", "read_session", "write_session"]

COOKIE = "corral_session"
MAX_AGE_S = 12 * 3600  # a day's work; signing in again after it is cheap
_SALT = "corral.web.session"


@dataclass(frozen=True, slots=True)
class WebSession:
    sid: str  # random; the CSRF token derives from it
    key_id: int | None = None  # the signed-in key, or None: anonymous (or the open server's local user)
    key_prefix: str | None = None


def _secret() -> str:
    return get_settings().secret_key.get_secret_value()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(), salt=_SALT)


def new_session(key_id: int | None = None, key_prefix: str | None = None) -> WebSession:
    return WebSession(secrets.token_urlsafe(18), key_id, key_prefix)


def read_session(request: Request) -> WebSession | None:
    """The request's session, or None when it has none, or one that is forged, malformed or expired."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > 1024:
        return None
    try:
        data = _serializer().loads(raw, max_age=MAX_AGE_S)
    except BadSignature:  # SignatureExpired is one too
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None
    key_id, prefix = data.get("key"), data.get("prefix")
    if isinstance(key_id, int) and isinstance(prefix, str):
        return WebSession(data["sid"], key_id, prefix)
    return WebSession(data["sid"])


def write_session(request: Request, response: Response, session: WebSession) -> None:
    data: dict[str, object] = {"sid": session.sid, "iat": int(time.time())}
    if session.key_id is not None:
        data.update(key=session.key_id, prefix=session.key_prefix)
    response.set_cookie(COOKIE, _serializer().dumps(data), max_age=MAX_AGE_S, path="/", httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")


def csrf_token(session: WebSession) -> str:
    return hmac.new(_secret().encode(), f"csrf:{session.sid}".encode(), hashlib.sha256).hexdigest()


def csrf_matches(session: WebSession | None, token: str | None) -> bool:
    if session is None or not token or len(token) > 128:
        return False
    return hmac.compare_digest(csrf_token(session), token)
