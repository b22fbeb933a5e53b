"""Idempotency keys: a client that retries a POST with the same ``Idempotency-Key`` gets the job or
run the first attempt created, not a second one.

The key is claimed in its own transaction before the work is created, so two concurrent requests with
one key cannot both create: the loser sees the claim. Same key and same body → the original resource;
same key, other body → :class:`ConflictError`; a claim whose creation failed is released, so the
client may retry. Keys expire after ``ttl`` (24 hours by default), as Stripe's do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from corral.core.db import IdempotencyKey, get_sessionmaker
from corral.core.errors import ConflictError, InvalidInputError

__all__ = ["Once", "fingerprint", "once"]

Kind = Literal["job", "run"]
_PENDING = ""
TTL = timedelta(hours=24)


def fingerprint(*parts: bytes | str) -> str:
    """A digest of a request's parts (route, body) to tell a replay from a different request."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Once:
    resource_id: str
    replayed: bool  # True: an earlier request with this key created it


def _check_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidInputError("Idempotency-Key must be 1-255 printable characters")
    return key


def once(workspace_id: int, key: str | None, request_hash: str, kind: Kind,
         create: Callable[[], str], ttl: timedelta = TTL) -> Once:
    """Run ``create`` (which returns the new resource's id) at most once per ``key`` in the workspace.
    Without a key it simply runs."""
    if key is None:
        return Once(create(), replayed=False)
    key = _check_key(key)
    sf = get_sessionmaker()
    now = datetime.now(UTC)
    with sf.begin() as session:
        session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key,
            IdempotencyKey.expires_at < now))
    try:
        with sf.begin() as session:
            session.add(IdempotencyKey(workspace_id=workspace_id, key=key, request_hash=request_hash,
                                       resource_kind=kind, resource_id=_PENDING, expires_at=now + ttl))
    except IntegrityError:
        return _replay(workspace_id, key, request_hash, kind)
    try:
        resource_id = create()
    except BaseException:
        with sf.begin() as session:  # release the claim: the request made nothing, so it may be retried
            session.execute(delete(IdempotencyKey).where(
                IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key,
                IdempotencyKey.resource_id == _PENDING))
        raise
    with sf.begin() as session:
        row = session.scalars(select(IdempotencyKey).where(
            IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key)).one()
        row.resource_id = resource_id
    return Once(resource_id, replayed=False)


def _replay(workspace_id: int, key: str, request_hash: str, kind: Kind) -> Once:
    with get_sessionmaker()() as session:
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key))
    if row is None:  # released between our insert and this read: the first request failed
        raise ConflictError("a request with this Idempotency-Key just failed; retry it")
    if row.request_hash != request_hash or row.resource_kind != kind:
        raise ConflictError("this Idempotency-Key was used with a different request; use a new key")
    if row.resource_id == _PENDING:
        raise ConflictError("a request with this Idempotency-Key is still being processed; retry shortly")
    return Once(row.resource_id, replayed=True)
