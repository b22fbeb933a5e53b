"""A background thread that refreshes a job's heartbeat while its work runs.

The watchdog requeues jobs whose heartbeat stops; a long batch (a big PDF, a slow embedding) must not
look dead, so the heartbeat ticks on its own clock rather than between documents. If the process
dies, so does the thread, and the heartbeat stops — which is the point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from corral.core.db import Job, JobState

__all__ = ["beat", "claim", "keep_alive"]

log = logging.getLogger(__name__)


def beat(session_factory: sessionmaker[Session], job_id: str) -> None:
    """Refresh ``job_id``'s heartbeat now (only while it is running)."""
    with session_factory.begin() as session:
        session.execute(
            update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING)
            .values(heartbeat_at=datetime.now(UTC))
        )


def claim(session_factory: sessionmaker[Session], job_id: str) -> None:
    """Mark ``job_id`` running with a fresh heartbeat, before any slow setup (loading models), so
    that the watchdog does not take a job being started for a lost one."""
    now = datetime.now(UTC)
    with session_factory.begin() as session:
        session.execute(
            update(Job).where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
                              Job.cancel_requested.is_(False))
            .values(state=JobState.RUNNING, heartbeat_at=now,
                    started_at=func.coalesce(Job.started_at, now))
        )


@contextmanager
def keep_alive(session_factory: sessionmaker[Session], job_id: str, every: float) -> Iterator[None]:
    """Refresh ``job_id``'s heartbeat every ``every`` seconds until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            try:
                beat(session_factory, job_id)
            except Exception as exc:  # a missed beat is not fatal; the work itself reports errors
                log.warning("heartbeat for job %s failed: %r", job_id, exc)

    thread = threading.Thread(target=run, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
