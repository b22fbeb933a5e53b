"""Who is asking: every route but the health probes depends on :func:`require` with a scope.

A key travels as ``Authorization: Bearer crl_…`` (or ``X-API-Key``). An embedded server bound to a
loopback address runs *open* unless ``CORRAL_AUTH=required``: requests without a key act as the
single local user (the default workspace, every scope), and start-up says so. Everywhere else a
request without a valid key is a 401, and a key without the route's scope a 403.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import update

from corral.core.config import Mode, Settings
from corral.core.db import ApiKey, Scope, session_scope
from corral.core.errors import PermissionDeniedError, UnauthenticatedError
from corral.core.services import DEFAULT_WORKSPACE, get_or_create_workspace
from corral.core.services.keys import Principal, authenticate
from corral.platform.api.deps import SessionDep
from corral.platform.api.ratelimit import check_request

__all__ = [
    "AccessPolicy", "AdminCaller", "AskCaller", "IngestCaller", "ReadCaller", "access_policy",
    "is_loopback", "local_user", "require",
]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """How this server treats requests: ``open`` (no key needed: one local user) and the ``Host``
    names it answers to."""

    open: bool
    allowed_hosts: tuple[str, ...]
    bind_host: str


def _bound_names(bind_host: str) -> list[str]:
    import socket

    if bind_host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising the wildcard, not binding it
        names = [socket.gethostname(), socket.getfqdn(), *LOOPBACK_NAMES]
        with contextlib.suppress(OSError):
            names += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
        return names
    return [bind_host, *(LOOPBACK_NAMES if is_loopback(bind_host) else ())]


def access_policy(settings: Settings, bind_host: str) -> AccessPolicy:
    """Open only for an embedded server on a loopback address with ``CORRAL_AUTH=auto``."""
    is_open = (settings.auth == "auto" and settings.mode is Mode.EMBEDDED and is_loopback(bind_host))
    hosts = [h.lower() for h in (*_bound_names(bind_host), *settings.allowed_hosts)]
    return AccessPolicy(open=is_open, allowed_hosts=tuple(dict.fromkeys(hosts)), bind_host=bind_host)


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthenticatedError("send the API key as 'Authorization: Bearer crl_…'")
        return value.strip()
    return request.headers.get("x-api-key") or None


def _touch(principal: Principal, last: datetime | None) -> None:
    # last_used_at is for people reading key lists: a minute's precision spares a write per request.
    # It is written in its own short transaction: the request's session stays read-only until the route
    # writes, so on SQLite it never holds the write lock while the route works on another connection.
    now = datetime.now(UTC)
    if principal.key_id is None or (last is not None and last.replace(tzinfo=last.tzinfo or UTC)
                                    >= now - timedelta(minutes=1)):
        return
    with session_scope() as session:
        session.execute(update(ApiKey).where(ApiKey.id == principal.key_id).values(last_used_at=now))


def local_user(request: Request) -> Principal:
    """The open server's one user: the default workspace, created once in its own transaction."""
    cached: Principal | None = getattr(request.app.state, "local_user", None)
    if cached is None:
        with session_scope() as session:
            ws = get_or_create_workspace(session, DEFAULT_WORKSPACE)
            cached = Principal(workspace_id=ws.id, workspace=ws.name, scopes=frozenset(Scope))
        request.app.state.local_user = cached
    return cached


def _principal(request: Request, session: SessionDep) -> Principal:
    secret = _credential(request)
    if secret is not None:
        principal = authenticate(session, secret)
        key = session.get(ApiKey, principal.key_id)
        _touch(principal, key.last_used_at if key is not None else None)
        request.state.principal = principal
        return principal
    policy: AccessPolicy = request.app.state.access
    if policy.open:
        principal = local_user(request)
        request.state.principal = principal
        return principal
    raise UnauthenticatedError("this server needs an API key: send 'Authorization: Bearer crl_…' "
                               "(create one with `corral keys create`)")


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency admitting callers whose key has ``scope`` (``admin`` has them all)."""

    def _check(request: Request, principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        check_request(request, principal)  # per-key requests a minute; 429 past them
        if not principal.allows(scope):
            raise PermissionDeniedError(f"this API key lacks the {scope.value!r} scope")
        return principal

    _check.corral_scope = scope  # type: ignore[attr-defined]  # read by the every-route-has-a-scope test
    return _check


ReadCaller = Annotated[Principal, Depends(require(Scope.READ))]
AskCaller = Annotated[Principal, Depends(require(Scope.ASK))]
IngestCaller = Annotated[Principal, Depends(require(Scope.INGEST))]
AdminCaller = Annotated[Principal, Depends(require(Scope.ADMIN))]


def log_policy(policy: AccessPolicy) -> None:
    if policy.open:
        log.warning("Corral is serving OPEN on %s: requests without an API key act as the local "
                    "user with every scope. Set CORRAL_AUTH=required to demand keys.", policy.bind_host)
