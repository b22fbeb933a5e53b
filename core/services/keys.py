"""API keys: created with a secret shown once, stored as a hash, scoped to one workspace.

A key reads ``crl_<8 hex>_<43 urlsafe>``. The first part (``crl_<8 hex>``) is its prefix, stored in
clear so that people can tell keys apart in lists; the whole key is stored as its SHA-256. The secret
carries 256 random bits, so a fast hash is enough: nothing can be guessed from the digest.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.core.db import ApiKey, Scope, Workspace
from corral.core.errors import InvalidInputError, NotFoundError, UnauthenticatedError

__all__ = [
    "IssuedKey", "Principal", "authenticate", "create_key", "get_key", "hash_key", "key_principal",
    "list_keys", "parse_scopes", "revoke_key",
]

_KEY = re.compile(r"^crl_[0-9a-f]{8}_[A-Za-z0-9_-]{20,64}$")
_WRONG = "invalid API key: unknown, revoked or expired"  # one text: which of them is not revealed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a key of a workspace with its scopes, or the single local user of an open
    embedded server (``key_id`` None, every scope)."""

    workspace_id: int
    workspace: str
    scopes: frozenset[Scope]
    key_id: int | None = None
    key_prefix: str | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: ``secret`` is the only time the whole key exists outside its owner."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(values: list[str] | tuple[str, ...]) -> list[Scope]:
    """Scopes from their names; an unknown name is an :class:`InvalidInputError`."""
    out: list[Scope] = []
    for value in values:
        try:
            scope = Scope(value.strip().lower())
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidInputError(f"unknown scope {value[:40]!r}; use {known}") from None
        if scope not in out:
            out.append(scope)
    if not out:
        raise InvalidInputError("a key needs at least one scope")
    return out


def _aware(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def create_key(
    session: Session, workspace: Workspace, name: str, scopes: list[Scope], *,
    expires_at: datetime | None = None, requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> IssuedKey:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInputError("a key's name must be 1-128 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInputError("a key's name must not contain control characters")
    expires_at = _aware(expires_at)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInputError("expires_at must be in the future")
    prefix = f"crl_{secrets.token_hex(4)}"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        workspace_id=workspace.id, name=name, prefix=prefix, key_hash=hash_key(secret),
        scopes=[s.value for s in scopes], expires_at=expires_at,
        requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute,
    )
    session.add(key)
    session.flush()
    return IssuedKey(key, secret)


def authenticate(session: Session, secret: str) -> Principal:
    """The principal a key stands for; :class:`UnauthenticatedError` for anything else, with one
    message whether the key is malformed, unknown, revoked or expired."""
    if not _KEY.fullmatch(secret or ""):
        raise UnauthenticatedError(_WRONG)
    return _principal(session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))))


def key_principal(session: Session, key_id: int, prefix: str) -> Principal:
    """The principal of the key ``key_id`` whose prefix is ``prefix`` (a dashboard session names its
    key so, never holding the secret); :class:`UnauthenticatedError` once it is revoked or expired."""
    key = session.get(ApiKey, key_id)
    return _principal(key if key is not None and key.prefix == prefix else None)


def _principal(key: ApiKey | None) -> Principal:
    now = datetime.now(UTC)
    expires = _aware(key.expires_at) if key is not None else None
    if key is None or key.revoked_at is not None or (expires is not None and expires <= now):
        raise UnauthenticatedError(_WRONG)
    ws = key.workspace
    return Principal(
        workspace_id=ws.id, workspace=ws.name,
        scopes=frozenset(Scope(s) for s in key.scopes if s in Scope._value2member_map_),
        key_id=key.id, key_prefix=key.prefix, requests_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
    )


def list_keys(session: Session, workspace_id: int | None = None) -> list[ApiKey]:
    """Keys, newest first; of one workspace when ``workspace_id`` is given."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    return list(session.scalars(query))


def get_key(session: Session, ident: str, workspace_id: int | None = None) -> ApiKey:
    """A key by id or prefix (``crl_ab12cd34``), within ``workspace_id`` when given."""
    query = select(ApiKey)
    if ident.isascii() and ident.isdigit() and len(ident) < 12:  # not "²", which isdigit() too
        query = query.where(ApiKey.id == int(ident))
    else:
        query = query.where(ApiKey.prefix == ident[:16])
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    key = session.scalar(query)
    if key is None:
        raise NotFoundError(f"no API key {ident[:40]!r}")
    return key


def revoke_key(session: Session, ident: str, workspace_id: int | None = None) -> ApiKey:
    """Revoke a key (idempotent); it stops working on its next request."""
    key = get_key(session, ident, workspace_id)
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    return key
