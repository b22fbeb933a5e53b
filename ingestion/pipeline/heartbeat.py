"""A background thread that refreshes a job's heartbeat while its work runs.

The watchdog requeues jobs whose heartbeat stops; a long batch (a big PDF, a slow embedding) must not
look dead, so the heartbeat ticks on its own clock as well as after every batch. If the process
dies, so does the thread, and the heartbeat stops — which is the point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from corral.core.services.jobs import heartbeat
from corral.core.services.liveness import beating

__all__ = ["keep_alive"]


@contextmanager
def keep_alive(session_factory: sessionmaker[Session], job_id: str, every: float) -> Iterator[None]:
    """Refresh ``job_id``'s heartbeat every ``every`` seconds until the block ends."""

    def beat() -> None:
        with session_factory.begin() as session:
            heartbeat(session, job_id)

    with beating(beat, every, f"heartbeat-{job_id[:8]}"):
        yield
