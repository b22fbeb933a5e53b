"""Sending webhook deliveries: one signed POST per attempt, retried with exponential backoff.

Each request carries the delivery's JSON body (``{"event", "created_at", "data"}``) and:

``X-Corral-Event``      the event, e.g. ``job.finished``
``X-Corral-Delivery``   the delivery's id (the same on every retry: receivers deduplicate on it)
``X-Corral-Timestamp``  Unix seconds when this attempt was signed
``X-Corral-Signature``  ``v1=<hex HMAC-SHA256 of "{timestamp}.{body}" keyed with the secret>``

A receiver recomputes the HMAC over the raw body bytes, compares in constant time, and refuses a
timestamp more than a few minutes away from its clock (a replay). This is the Stripe pattern; the
Standard Webhooks spec (and its ``standardwebhooks`` package) signs ``id.timestamp.body`` into
``webhook-*`` headers with base64, so it would not produce these headers, and the signing itself is
the few lines of :func:`sign`.

A 2xx response delivers; anything else (another status, a redirect — never followed —, a timeout,
a refused connection, a target that now resolves to a private address) is a failed attempt,
recorded with its status code or error and duration, and retried after
``CORRAL_WEBHOOK_BACKOFF_SECONDS`` * 2^(n-1) until ``CORRAL_WEBHOOK_MAX_ATTEMPTS``. The response
body is never read.

The target's host is resolved and checked right before every attempt, and the request goes to
the address that was checked (the ``Host`` header and TLS name stay the host's), so a name that
resolves elsewhere by the time of the connection (DNS rebinding) reaches nothing unchecked.

Who runs it: :func:`start_webhook_runner` starts a :class:`DeliveryRunner` thread in every API
process (``corral serve``), in embedded and server mode alike. Sending is I/O, needs neither the
model nor a broker, and the API is the one process every deployment runs; several API processes
share the work safely because deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease
(see :mod:`corral.core.services.webhooks`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from corral.core.config import Settings, get_settings
from corral.core.db import session_scope
from corral.core.errors import CorralError
from corral.core.services.webhooks import Target, check_target, claim_due, record_attempt, release

__all__ = ["DeliveryRunner", "send_attempt", "sign", "start_webhook_runner"]

log = logging.getLogger(__name__)

USER_AGENT = "Corral-Webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Corral-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def _pinned(target: Target) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, extra headers and httpx extensions that send to the checked address of ``target``."""
    if not target.addresses:  # an allowed host: connect by name
        return target.url, {}, {}
    default = 443 if target.scheme == "https" else 80
    url = str(httpx.URL(target.url).copy_with(host=target.addresses[0], port=target.port))
    host = target.host if target.port == default else f"{target.host}:{target.port}"
    extensions: dict[str, Any] = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return url, {"Host": host}, extensions


def send_attempt(client: httpx.Client, settings: Settings, *, url: str, secret: str,
                 delivery_id: int, event: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """One POST; the attempt's record and whether it delivered."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "X-Corral-Event": event, "X-Corral-Delivery": str(delivery_id),
        "X-Corral-Timestamp": str(timestamp), "X-Corral-Signature": sign(secret, timestamp, body),
    }
    at = datetime.now(UTC).isoformat()
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        target = check_target(url, settings.webhook_allowed_hosts)
        request_url, extra, extensions = _pinned(target)
        request = client.build_request("POST", request_url, content=body,
                                       headers={**headers, **extra}, extensions=extensions)
        response = client.send(request, stream=True)  # the body is never read
        response.close()
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except CorralError as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception as exc:  # recorded as a failed attempt: a delivery never stays stuck
        log.exception("webhook delivery %s: unexpected error", delivery_id)
        error = f"{type(exc).__name__}: {exc}"
    attempt = {"at": at, "status_code": status, "error": error[:500] if error else None,
               "duration_ms": round((time.monotonic() - started) * 1000)}
    return attempt, error is None


class DeliveryRunner:
    """Sends due deliveries: :meth:`run_once` for one pass, :meth:`start` for a background thread
    polling every ``CORRAL_WEBHOOK_POLL_SECONDS``."""

    def __init__(self, settings: Settings | None = None, batch: int = 20) -> None:
        self.settings = settings or get_settings()
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Claim the due deliveries, send each once, record the outcomes; how many were sent."""
        s = self.settings
        # The lease covers the whole batch, sent one after the other, each within its timeout.
        lease = self.batch * (s.webhook_timeout_seconds + 1) + 30
        with session_scope() as session:
            claimed = [(d.id, d.event, dict(d.payload), h.url, h.secret)
                       for d, h in claim_due(session, lease_seconds=lease, limit=self.batch)]
        if not claimed:
            return 0
        timeout = httpx.Timeout(s.webhook_timeout_seconds)
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for n, (delivery_id, event, payload, url, secret) in enumerate(claimed):
                if self._stop.is_set():  # shutting down: hand the rest back, due now
                    with session_scope() as session:
                        release(session, [c[0] for c in claimed[n:]])
                    return n
                attempt, delivered = send_attempt(client, s, url=url, secret=secret,
                                                  delivery_id=delivery_id, event=event,
                                                  payload=payload)
                with session_scope() as session:
                    record_attempt(session, delivery_id, attempt, delivered=delivered,
                                   max_attempts=s.webhook_max_attempts,
                                   backoff_seconds=s.webhook_backoff_seconds)
                if not delivered:
                    log.info("webhook delivery %s (%s) failed: %s", delivery_id, event,
                             attempt["error"])
        return len(claimed)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once() >= self.batch
            except CorralError as exc:  # e.g. the database is briefly unavailable
                log.warning("webhook delivery pass failed: %s", exc)
                busy = False
            except Exception:
                log.exception("webhook delivery pass failed")
                busy = False
            if not busy:
                self._stop.wait(self.settings.webhook_poll_seconds)

    def start(self) -> DeliveryRunner:
        self._thread = threading.Thread(target=self._loop, name="corral-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the attempt in flight (waiting at most ``timeout``, default one attempt)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.webhook_timeout_seconds + 5 if timeout is None else timeout)


def start_webhook_runner() -> DeliveryRunner:
    """The runner thread of an API process; stop it on shutdown."""
    return DeliveryRunner().start()
