"""Per-key rate limits: requests and model tokens per sliding minute.

The functions the rest of the platform calls (names and signatures are stable):

``check_request(request, principal) -> None``
    Called by :func:`corral.platform.api.auth.require` for every authenticated request: counts one
    request for the key and raises :class:`RateLimitedError` (429 with ``Retry-After``) past its
    limit. A request counts once even when a route depends on several scopes.
``check_tokens(principal) -> None``
    Before a run or an ask is accepted: :class:`RateLimitedError` when the key has no tokens left
    this minute. It does not reserve any: a run's cost is known only once it has finished.
``charge_tokens(principal_or_key_id, tokens) -> None``
    After the run or ask finished: charge its prompt + completion tokens to the key (a
    :class:`Principal`, an ``ApiKey.id``, or ``None`` for the open local user). A charge is never
    refused, and one larger than what is left stays in the window, so a big run makes the key wait
    until the window has slid past it.

Limits: a key's ``requests_per_minute`` / ``tokens_per_minute``, else the deployment's defaults
``CORRAL_RATE_LIMIT_REQUESTS_PER_MINUTE`` / ``CORRAL_RATE_LIMIT_TOKENS_PER_MINUTE``; 0 means no
limit. The open local user of an embedded loopback server (no key) is held to the defaults as well:
it is one identity, ``local``, and the defaults are generous enough for a person and their scripts,
while a runaway loop still cannot starve the one process that also runs the model.

Counting uses the `limits` library's sliding-window counter (two counters per key and window, O(1)
whatever the cost, where a moving window would store one entry per token). The counters live in
Redis in server mode, so every API process and worker shares them, and in this process in embedded
mode. ``Retry-After`` is the time until the weighted count falls below the limit again.

If Redis cannot be reached the limiter **fails open**: the request is served and a warning logged
(at most once a minute), and Redis is not asked again for a few seconds. Per-minute limits smooth
load; they are not what keeps data or money safe — scopes and the workspace's monthly budget (read
from the database) still hold — and failing closed would turn a Redis hiccup into an outage of the
whole API. It is never a 500.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError

from corral.core.config import Mode, Settings, get_settings
from corral.core.errors import RateLimitedError
from corral.core.services.keys import Principal

__all__ = ["RateLimiter", "charge_tokens", "check_request", "check_tokens", "get_limiter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNLIMITED = 2**50  # the "limit" a charge is made against: it is always recorded (exact in Lua doubles)
_PAUSE_AFTER_FAILURE = 5.0  # seconds the limiter leaves an unreachable Redis alone
_WARN_EVERY = 60.0


class _Minute(RateLimitItemPerMinute):
    """A one-minute limit whose storage key leaves out the amount, so that changing a key's limit,
    or charging against no limit, keeps counting in the same window."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(str(i) for i in identifiers)])


@dataclass(slots=True)
class RateLimiter:
    """Request and token windows over one storage; built from settings by :func:`get_limiter`."""

    storage: MemoryStorage | RedisStorage
    namespace: str
    default_requests: int
    default_tokens: int
    _strategy: SlidingWindowCounterRateLimiter = field(init=False)
    _paused_until: float = 0.0
    _warned_at: float = -math.inf

    def __post_init__(self) -> None:
        self._strategy = SlidingWindowCounterRateLimiter(self.storage)

    # The three operations -----------------------------------------------------------------

    def hit_request(self, who: str, limit: int) -> None:
        """Count one request of ``who``; :class:`RateLimitedError` past ``limit`` a minute."""
        if limit <= 0:
            return
        item = _Minute(limit, namespace=f"{self.namespace}:requests")
        allowed = self._guard(lambda: self._strategy.hit(item, who), default=True)
        if not allowed:
            wait = self._wait(item, who)
            raise RateLimitedError(
                f"rate limit: this API key may make {limit} requests a minute; retry in "
                f"{math.ceil(wait)} s", retry_after=wait)

    def check_tokens(self, who: str, limit: int) -> None:
        """:class:`RateLimitedError` when ``who`` has no tokens left of ``limit`` this minute."""
        if limit <= 0:
            return
        item = _Minute(limit, namespace=f"{self.namespace}:tokens")
        allowed = self._guard(lambda: self._strategy.test(item, who), default=True)
        if not allowed:
            wait = self._wait(item, who)
            raise RateLimitedError(
                f"token limit: this API key may use {limit:,} model tokens a minute and has none "
                f"left; retry in {math.ceil(wait)} s", retry_after=wait)

    def charge_tokens(self, who: str, tokens: int) -> None:
        if tokens <= 0:
            return
        item = _Minute(_UNLIMITED, namespace=f"{self.namespace}:tokens")
        self._guard(lambda: self._strategy.hit(item, who, cost=int(tokens)), default=True)

    # Helpers ------------------------------------------------------------------------------

    def _wait(self, item: _Minute, who: str) -> float:
        """Seconds until one more unit fits under ``item``'s limit."""
        expiry = item.get_expiry()
        window = self._guard(lambda: self.storage.get_sliding_window(item.key_for(who), expiry),
                             default=None)
        if window is None:
            return float(expiry)
        return wait_seconds(*window, limit=item.amount, expiry=expiry)

    def _guard(self, call: Callable[[], T], *, default: T) -> T:
        now = time.monotonic()
        if now < self._paused_until:
            return default
        try:
            return call()
        except (StorageError, RedisError, OSError) as exc:  # fail open: see the module docstring
            self._paused_until = now + _PAUSE_AFTER_FAILURE
            if now - self._warned_at >= _WARN_EVERY:
                self._warned_at = now
                log.warning("rate limits are not enforced: their storage failed (%s: %s)",
                            type(exc).__name__, exc)
            return default


def wait_seconds(previous: int, previous_ttl: float, current: int, current_ttl: float, *,
                 limit: int, expiry: int) -> float:
    """Time until a sliding-window counter admits one more unit under ``limit``.

    The window weighs the previous period's count by the part of it still inside the minute:
    ``previous * previous_ttl / expiry + current``. ``current_ttl`` runs one period past the end
    of the current one (that is when its counter expires), so the current period ends in
    ``current_ttl - expiry``; then the current count starts to fade in turn.
    """
    target = limit - 1  # the weighted count must drop to at most this
    ends_in = max(0.0, current_ttl - expiry)
    if current <= target:
        if previous <= 0:
            return 0.0
        return max(0.0, previous_ttl - (target - current) * expiry / previous)
    return ends_in + expiry * (1 - target / current)


_lock = threading.Lock()
_built: tuple[Settings, RateLimiter] | None = None


def _build(settings: Settings) -> RateLimiter:
    storage: MemoryStorage | RedisStorage
    if settings.mode is Mode.SERVER and settings.redis_url:
        storage = RedisStorage(settings.redis_url, wrap_exceptions=True,
                               socket_connect_timeout=0.5, socket_timeout=0.5)
    else:
        storage = MemoryStorage()
    return RateLimiter(storage, settings.rate_limit_namespace,
                       settings.rate_limit_requests_per_minute, settings.rate_limit_tokens_per_minute)


def get_limiter() -> RateLimiter:
    """The process's limiter for the current settings (rebuilt when the settings are reloaded)."""
    global _built
    settings = get_settings()
    with _lock:
        if _built is None or _built[0] is not settings:
            _built = (settings, _build(settings))
        return _built[1]


def _who(key_id: int | None) -> str:
    return "local" if key_id is None else f"key:{key_id}"


def check_request(request: Request, principal: Principal) -> None:
    if getattr(request.state, "rate_limited", False):
        return
    request.state.rate_limited = True
    limiter = get_limiter()
    limit = principal.requests_per_minute
    limiter.hit_request(_who(principal.key_id), limiter.default_requests if limit is None else limit)


def check_tokens(principal: Principal) -> None:
    limiter = get_limiter()
    limit = principal.tokens_per_minute
    limiter.check_tokens(_who(principal.key_id), limiter.default_tokens if limit is None else limit)


def charge_tokens(principal_or_key_id: Principal | int | None, tokens: int) -> None:
    key_id = (principal_or_key_id.key_id if isinstance(principal_or_key_id, Principal)
              else principal_or_key_id)
    get_limiter().charge_tokens(_who(key_id), tokens)
