"""Readiness: can this process do its work now? The database, broker, vector store and inference
service it is configured with, each asked with a short timeout.

``/healthz`` says the process is alive; ``/readyz`` (this) says whether what it depends on answers,
so that a load balancer or ``depends_on: service_healthy`` sends work only where it can be done.
The answer is public, so it names each dependency and whether it answered — never an address, a
URL, a password or an error's text, which could carry them: a failure is one of a few fixed words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import httpx
from sqlalchemy import text

from corral.core.config import Mode, Settings, get_settings

__all__ = ["Check", "Readiness", "check_readiness", "inference_health_url"]


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency's answer: ``ok``, or ``error`` — one of ``unreachable``, ``timeout``,
    ``unhealthy`` — and how long the check took."""

    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: dict[str, Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def to_dict(self) -> dict[str, object]:
        return {"status": "ready" if self.ready else "not_ready",
                "checks": {name: {"ok": c.ok, "seconds": round(c.seconds, 4),
                                  **({"error": c.error} if c.error else {})}
                           for name, c in self.checks.items()}}


class _Unhealthy(Exception):
    """It answered, but not as a healthy service does."""


def _database() -> None:
    from corral.core.db.session import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _broker(settings: Settings, timeout: float) -> None:
    import redis

    client = redis.Redis.from_url(settings.redis_url or "", socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        if not client.ping():
            raise _Unhealthy
    finally:
        client.close()


def _vector_store(settings: Settings, timeout: float) -> None:
    if settings.chroma_host:
        response = httpx.get(f"http://{settings.chroma_host}:{settings.chroma_port}/api/v2/heartbeat",
                             timeout=timeout)
        if not response.is_success:
            raise _Unhealthy
    elif not settings.data_dir.is_dir():  # the on-disk store lives there (created at first use)
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def inference_health_url(base_url: str) -> str:
    """``/healthz`` of the OpenAI-compatible server at ``base_url`` (which usually ends in ``/v1``)."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/healthz"


def _inference(settings: Settings, timeout: float) -> None:
    response = httpx.get(inference_health_url(settings.openai_base_url or ""), timeout=timeout)
    if not response.is_success:
        raise _Unhealthy


def _timed(check: Callable[[], None]) -> Check:
    start = time.perf_counter()
    try:
        check()
    except _Unhealthy:
        return Check(False, time.perf_counter() - start, "unhealthy")
    except (TimeoutError, httpx.TimeoutException):
        return Check(False, time.perf_counter() - start, "timeout")
    except Exception:
        return Check(False, time.perf_counter() - start, "unreachable")
    return Check(True, time.perf_counter() - start)


def check_readiness(settings: Settings | None = None) -> Readiness:
    """Ask every configured dependency at once, each within ``CORRAL_READINESS_TIMEOUT_S``: the
    database always; in server mode the broker; the vector store; the inference service when the
    agents answer through one (``CORRAL_CHAT_BACKEND=openai``)."""
    settings = settings or get_settings()
    timeout = settings.readiness_timeout_s
    checks: dict[str, Callable[[], None]] = {"database": _database,
                                             "vector_store": lambda: _vector_store(settings, timeout)}
    if settings.mode is Mode.SERVER:
        checks["broker"] = lambda: _broker(settings, timeout)
    if settings.chat_backend == "openai" and settings.openai_base_url:
        checks["inference"] = lambda: _inference(settings, timeout)
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(_timed, check) for name, check in checks.items()}
        results: dict[str, Check] = {}
        deadline = time.monotonic() + timeout + 1
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:  # a check its own timeout did not bound (a hung connect)
                results[name] = Check(False, timeout, "timeout")
        return Readiness(results)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
