"""Job records: the durable truth about background work, whatever the broker does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from corral.core.db import Job, JobKind, JobState
from corral.core.errors import NotFoundError


def _now() -> datetime:
    return datetime.now(UTC)


def create_job(
    session: Session, kind: JobKind, corpus_id: int | None, params: dict[str, Any]
) -> Job:
    job = Job(kind=kind, state=JobState.QUEUED, corpus_id=corpus_id, params=params, total=0, done=0)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id) if len(job_id) <= 32 else None
    if job is None:
        raise NotFoundError(f"no job with id {job_id[:40]!r}")
    return job


def start_job(session: Session, job: Job, total: int = 0) -> None:
    job.state = JobState.RUNNING
    job.started_at = job.started_at or _now()
    job.heartbeat_at = _now()
    job.total = total


def heartbeat(session: Session, job: Job, done: int | None = None) -> None:
    if done is not None:
        job.done = done
    job.heartbeat_at = _now()


def finish_job(
    session: Session,
    job: Job,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    job.state = state
    job.result = result
    job.error = error
    job.finished_at = _now()
    job.heartbeat_at = job.finished_at
