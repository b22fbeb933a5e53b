"""Webhooks: URLs a workspace asks to be told about finished jobs and runs, and their deliveries.

:func:`enqueue_event` writes one :class:`WebhookDelivery` per active webhook of the workspace
subscribed to the event, in the caller's session: the event is delivered if and only if the change
that caused it commits (an outbox). A delivery runner (``corral.platform.webhooks``) sends them.

A delivery's body is ``{"event", "created_at", "data"}`` with ``data`` the payload given to
:func:`enqueue_event`. Its ``attempts`` list one entry per try: ``at`` (ISO time), ``status_code``
(``None`` when no response came), ``error`` and ``duration_ms``. It is ``pending`` until a 2xx
response (``delivered``) or its last attempt (``failed``).

Runners claim due deliveries with :func:`claim_due`: ``SELECT … FOR UPDATE SKIP LOCKED`` on
PostgreSQL, and the claim pushes ``next_attempt_at`` past the attempt's timeout (a lease), so two
runners never send one delivery at once; a runner that dies mid-attempt leaves the delivery to be
tried again when the lease runs out.

Targets are checked for server-side request forgery when a webhook is created and again before
every attempt (a name can resolve elsewhere by then): :func:`check_target` refuses loopback,
private, link-local (cloud metadata), shared, multicast, reserved and unspecified addresses, IPv4
embedded in IPv6 included, unless the host is listed in ``CORRAL_WEBHOOK_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Job, Webhook, WebhookDelivery
from corral.core.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from corral.core.netaddr import non_public_reason

__all__ = [
    "EVENTS", "MAX_WEBHOOKS", "Target", "check_target", "claim_due", "count_deliveries",
    "count_webhooks", "create_webhook", "delete_webhook", "enqueue_event", "get_webhook",
    "job_event", "list_deliveries", "list_webhooks", "record_attempt", "release",
]

EVENTS = ("job.finished", "run.finished")
MAX_WEBHOOKS = 50  # per workspace
MAX_PAGE = 1000

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"



def _now() -> datetime:
    return datetime.now(UTC)


# Targets ------------------------------------------------------------------------------------


class Target:
    """A checked webhook URL: its host, port, and the addresses that were found public (empty for
    an allowed host, which is then resolved by whoever connects)."""

    __slots__ = ("addresses", "host", "port", "scheme", "url")

    def __init__(self, url: str, scheme: str, host: str, port: int, addresses: list[str]) -> None:
        self.url, self.scheme, self.host, self.port, self.addresses = url, scheme, host, port, addresses


def parse_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; :class:`InvalidInputError` for anything else."""
    url = url.strip()
    if not 1 <= len(url) <= 2048:
        raise InvalidInputError("a webhook URL must be 1-2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"invalid webhook URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError("a webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise InvalidInputError("a webhook URL must not carry credentials; the payload is signed")
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def check_target(url: str, allowed_hosts: Sequence[str]) -> Target:
    """Resolve the URL's host and refuse it (:class:`PermissionDeniedError`) unless every address is
    public or the host is allowed; an unresolvable name is an :class:`InvalidInputError`."""
    scheme, host, port = parse_url(url)
    if host in {h.strip().lower().strip("[]") for h in allowed_hosts}:
        return Target(url, scheme, host, port, [])
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise InvalidInputError(f"webhook host {host[:200]!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None:
            raise PermissionDeniedError(
                f"webhook host {host[:200]!r} resolves to a {reason} address ({address}): sending "
                "to it is refused; list the host in CORRAL_WEBHOOK_ALLOWED_HOSTS if it is trusted")
    if not addresses:
        raise InvalidInputError(f"webhook host {host[:200]!r} does not resolve")
    return Target(url, scheme, host, port, addresses)


# Webhooks -----------------------------------------------------------------------------------


def _events(events: Sequence[str]) -> list[str]:
    out: list[str] = []
    for event in events:
        if event not in EVENTS:
            raise InvalidInputError(f"unknown event {event[:40]!r}; use {', '.join(EVENTS)}")
        if event not in out:
            out.append(event)
    if not out:
        raise InvalidInputError("a webhook needs at least one event")
    return out


def create_webhook(session: Session, workspace_id: int, url: str, events: Sequence[str], *,
                   allowed_hosts: Sequence[str] = ()) -> Webhook:
    """A new webhook with a fresh signing secret (``webhook.secret``; show it once)."""
    chosen = _events(events)
    check_target(url, allowed_hosts)
    if count_webhooks(session, workspace_id) >= MAX_WEBHOOKS:
        raise InvalidInputError(f"a workspace has at most {MAX_WEBHOOKS} webhooks")
    hook = Webhook(workspace_id=workspace_id, url=url.strip(), events=chosen, active=True,
                   secret=f"whsec_{secrets.token_urlsafe(32)}")
    session.add(hook)
    session.flush()
    return hook


def count_webhooks(session: Session, workspace_id: int) -> int:
    query = select(func.count()).select_from(Webhook).where(Webhook.workspace_id == workspace_id)
    return int(session.scalar(query) or 0)


def list_webhooks(session: Session, workspace_id: int, *, limit: int = 100,
                  offset: int = 0) -> list[Webhook]:
    query = (select(Webhook).where(Webhook.workspace_id == workspace_id)
             .order_by(Webhook.id).limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset)))
    return list(session.scalars(query))


def get_webhook(session: Session, webhook_id: int, workspace_id: int) -> Webhook:
    """The workspace's webhook ``webhook_id``; another workspace's reads as not found."""
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.workspace_id != workspace_id:
        raise NotFoundError(f"no webhook {webhook_id}")
    return hook


def delete_webhook(session: Session, webhook_id: int, workspace_id: int) -> None:
    """Delete a webhook and its deliveries (pending ones are not sent)."""
    hook = get_webhook(session, webhook_id, workspace_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.flush()


# Deliveries ---------------------------------------------------------------------------------


def enqueue_event(session: Session, workspace_id: int, event: str, payload: dict[str, Any]) -> int:
    """Queue ``event`` with ``payload`` for every active webhook of the workspace subscribed to it;
    how many deliveries were queued. They are sent once the caller's transaction commits."""
    if event not in EVENTS:
        raise InvalidInputError(f"unknown event {event[:40]!r}")
    hooks = session.scalars(select(Webhook).where(Webhook.workspace_id == workspace_id,
                                                  Webhook.active.is_(True)))
    now = _now()
    body = {"event": event, "created_at": now.isoformat(), "data": payload}
    queued = 0
    for hook in hooks:
        if event in (hook.events or []):
            session.add(WebhookDelivery(webhook_id=hook.id, event=event, payload=body,
                                        state=PENDING, attempts=[], next_attempt_at=now))
            queued += 1
    return queued


def job_event(session: Session, job: Job) -> dict[str, Any]:
    """The ``data`` of a ``job.finished`` event: what the job was and how it ended."""
    corpus = session.get(Corpus, job.corpus_id) if job.corpus_id is not None else None
    return {
        "job": {
            "id": job.id, "kind": job.kind.value, "state": job.state.value,
            "corpus": corpus.name if corpus is not None else None,
            "done": job.done, "total": job.total, "failed": job.failed, "skipped": job.skipped,
            "error": job.error[:1000] if job.error else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "url": f"/v1/jobs/{job.id}",
        },
    }


def count_deliveries(session: Session, webhook_id: int) -> int:
    query = (select(func.count()).select_from(WebhookDelivery)
             .where(WebhookDelivery.webhook_id == webhook_id))
    return int(session.scalar(query) or 0)


def list_deliveries(session: Session, webhook_id: int, *, limit: int = 100,
                    offset: int = 0) -> list[WebhookDelivery]:
    """A webhook's deliveries, newest first."""
    query = (select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
             .order_by(WebhookDelivery.id.desc())
             .limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset)))
    return list(session.scalars(query))


def claim_due(session: Session, *, lease_seconds: float, limit: int = 20,
              now: datetime | None = None) -> list[tuple[WebhookDelivery, Webhook]]:
    """Deliveries due now, with their webhooks, leased to the caller for ``lease_seconds``.

    Rows another runner has locked are skipped (PostgreSQL; SQLite has a single writer). The
    caller commits the claim before sending, then reports with :func:`record_attempt`.
    """
    now = now or _now()
    query = (select(WebhookDelivery)
             .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
             .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
             .limit(limit).with_for_update(skip_locked=True))
    claimed: list[tuple[WebhookDelivery, Webhook]] = []
    for delivery in session.scalars(query):
        hook = session.get(Webhook, delivery.webhook_id)
        if hook is None or not hook.active:
            delivery.state, delivery.next_attempt_at = FAILED, None
            continue
        delivery.next_attempt_at = now + timedelta(seconds=lease_seconds)
        claimed.append((delivery, hook))
    session.flush()
    return claimed


def release(session: Session, delivery_ids: Sequence[int]) -> None:
    """Give claimed deliveries back unsent (a runner stopping): due again now."""
    now = _now()
    for delivery_id in delivery_ids:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is not None and delivery.state == PENDING:
            delivery.next_attempt_at = now


def record_attempt(session: Session, delivery_id: int, attempt: dict[str, Any], *, delivered: bool,
                   max_attempts: int, backoff_seconds: float) -> WebhookDelivery | None:
    """Append one attempt; the delivery is then delivered, failed (its last attempt), or pending
    again after ``backoff_seconds * 2**(attempts - 1)``. ``None`` when it was deleted meanwhile."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        return None
    attempts = [*(delivery.attempts or []), attempt]
    delivery.attempts = attempts
    now = _now()
    if delivered:
        delivery.state, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
    elif len(attempts) >= max_attempts:
        delivery.state, delivery.next_attempt_at = FAILED, None
    else:
        delivery.state = PENDING
        delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds * 2 ** (len(attempts) - 1))
    session.flush()
    return delivery
