"""A batch's checkpoint between documents (and between embedding groups inside a long one).

A batch used to be one indivisible unit: a cancel waited for its end, which for a batch holding a
3.5 MB file was minutes. At each checkpoint the batch now asks whether its job was cancelled, and
beats the job's heartbeat while it is there — a sign of life from the work itself, not only from
the heartbeat thread. The database is asked at most once every ``every`` seconds, so a batch of
many small documents does not pay a query per document.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral.core.db.models import Job
from corral.core.services.jobs import heartbeat

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)


class Checkpoint:
    """Asks whether ``job_id`` was cancelled, beating its heartbeat, at most every ``every`` s.

    Once it has seen the cancel it keeps answering ``True`` without asking again. A database that
    cannot be reached at a checkpoint is not a cancel: the batch's own writes will meet the error.
    """

    def __init__(self, session_factory: sessionmaker[Session], job_id: str, every: float = 1.0) -> None:
        self._sf = session_factory
        self._job_id = job_id
        self._every = every
        self._last = time.monotonic()  # the batch has just read the job: no need to ask at once
        self._cancelled = False

    def cancelled(self) -> bool:
        """Whether the job's cancel was requested (as of the last look)."""
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last < self._every:
            return False
        self._last = now
        try:
            with self._sf.begin() as session:
                self._cancelled = bool(session.scalar(
                    select(Job.cancel_requested).where(Job.id == self._job_id)))
                if not self._cancelled:
                    heartbeat(session, self._job_id)
        except Exception as exc:
            log.warning("checkpoint of job %s could not reach the database: %r", self._job_id, exc)
        return self._cancelled
