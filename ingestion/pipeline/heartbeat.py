"""A background thread that refreshes a job's heartbeat while its work runs.

The watchdog requeues jobs whose heartbeat stops; a long batch (a big PDF, a slow embedding) must not
look dead, so the heartbeat ticks on its own clock as well as after every batch. If the process
dies, so does the thread, and the heartbeat stops — which is the point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from corral.core.services.jobs import heartbeat

__all__ = ["keep_alive"]

log = logging.getLogger(__name__)


@contextmanager
def keep_alive(session_factory: sessionmaker[Session], job_id: str, every: float) -> Iterator[None]:
    """Refresh ``job_id``'s heartbeat every ``every`` seconds until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            try:
                with session_factory.begin() as session:
                    heartbeat(session, job_id)
            except Exception as exc:  # a missed beat is not fatal; the work itself reports errors
                log.warning("heartbeat for job %s failed: %r", job_id, exc)

    thread = threading.Thread(target=run, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
