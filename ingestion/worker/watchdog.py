"""The watchdog: requeue (or, out of attempts, fail) jobs whose heartbeat stopped.

Every worker runs it on a background thread from the moment it is ready, every half
``CORRAL_JOB_STALE_SECONDS``; ``corral jobs watchdog`` runs it once. Several watchdogs at once are
safe: the stale jobs are claimed with row locks (``SKIP LOCKED``) and a requeued job gets a fresh
heartbeat, so each stale job is requeued once per period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from corral.core.config import get_settings
from corral.core.db import session_scope
from corral.core.services import StaleJobs, reap_stale_jobs

__all__ = ["ACTION_HOOKS", "run_watchdog", "start_watchdog_thread"]

log = logging.getLogger(__name__)
_stop = threading.Event()
# Told (kind "job", action "requeued" | "failed") of every decision, e.g. to count it in metrics.
ACTION_HOOKS: list[Callable[[str, str], None]] = []


def run_watchdog(send: Callable[[str], None]) -> StaleJobs:
    """One pass: record the decisions, then hand each job to requeue to ``send``."""
    settings = get_settings()
    with session_scope() as session:
        stale = reap_stale_jobs(session, stale_after=settings.job_stale_seconds,
                                max_attempts=settings.job_max_attempts)
    for job_id in stale.requeue:
        log.warning("job %s stopped heartbeating: requeued", job_id)
        _tell("requeued")
        send(job_id)
    for job_id in stale.failed:
        log.error("job %s stopped heartbeating too often: failed", job_id)
        _tell("failed")
    return stale


def _tell(action: str) -> None:
    for hook in ACTION_HOOKS:
        try:
            hook("job", action)
        except Exception as exc:
            log.warning("watchdog hook failed: %r", exc)


def start_watchdog_thread(send: Callable[[str], None]) -> threading.Thread:
    """Run :func:`run_watchdog` now and then every half stale period, until the worker stops."""
    period = max(0.5, get_settings().job_stale_seconds / 2)

    def loop() -> None:
        while True:
            try:
                run_watchdog(send)
            except Exception as exc:  # the next pass tries again; never kill the worker
                log.warning("watchdog pass failed: %r", exc)
            if _stop.wait(period):
                return

    thread = threading.Thread(target=loop, name="corral-watchdog", daemon=True)
    thread.start()
    return thread


@worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(**_: Any) -> None:
    from corral.ingestion.worker.handoff import hand_off

    _stop.clear()
    start_watchdog_thread(hand_off)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _on_worker_shutdown(**_: Any) -> None:
    _stop.set()
