"""The runs' watchdog on every agent worker: fail runs whose worker stopped, resend lost ones.

It runs beside the jobs' watchdog (:mod:`corral.ingestion.worker.watchdog`), every half
``CORRAL_JOB_STALE_SECONDS``: a run whose agent worker was killed fails within 1.5 times that
(45 s by default) with ``error_type`` ``interrupted``, instead of staying ``running`` until the
broker redelivers its message. Several watchdogs at once are safe (rows claimed ``SKIP LOCKED``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from corral.core.config import get_settings
from corral.core.db import session_scope
from corral.core.errors import ServiceUnavailableError
from corral.core.services.runs import StaleRuns, reap_stale_runs
from corral.platform.observability.metrics import record_watchdog_action
from corral.platform.runs.dispatch import hand_off_run

__all__ = ["run_runs_watchdog", "start_runs_watchdog_thread"]

log = logging.getLogger(__name__)
_stop = threading.Event()


def run_runs_watchdog() -> StaleRuns:
    """One pass: record the decisions, then send the queued runs to resend again."""
    with session_scope() as session:
        stale = reap_stale_runs(session, stale_after=get_settings().job_stale_seconds)
    for run_id in stale.failed:
        log.error("run %s lost its worker (no heartbeat): failed", run_id)
        record_watchdog_action("run", "failed")
    for run_id in stale.resend:
        log.warning("run %s still queued: sent again", run_id)
        record_watchdog_action("run", "resent")
        try:
            hand_off_run(run_id)
        except ServiceUnavailableError as exc:  # the broker is down: the next pass tries again
            log.warning("could not resend run %s: %s", run_id, exc)
    return stale


def start_runs_watchdog_thread() -> threading.Thread:
    """Run :func:`run_runs_watchdog` every half stale period until the worker stops."""
    period = max(0.5, get_settings().job_stale_seconds / 2)

    def loop() -> None:
        while not _stop.wait(period):
            try:
                run_runs_watchdog()
            except Exception as exc:
                log.warning("runs watchdog pass failed: %r", exc)

    thread = threading.Thread(target=loop, name="corral-runs-watchdog", daemon=True)
    thread.start()
    return thread


@worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(**_: Any) -> None:
    _stop.clear()
    start_runs_watchdog_thread()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _on_worker_shutdown(**_: Any) -> None:
    _stop.set()
