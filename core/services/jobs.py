"""Job records: the durable truth about background work, whatever the broker does.

A job moves ``queued → running → succeeded | failed | cancelled``. While it runs, whoever works on it
refreshes ``heartbeat_at``; :func:`reap_stale_jobs` (the watchdog) finds jobs whose heartbeat
stopped — a worker killed, a broker that lost its messages — and hands them back to be queued again,
up to a number of attempts, after which they fail with the reason. Per-document progress is in
``JobItem`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Job, JobKind, JobState
from corral.core.db.models import JobItem
from corral.core.errors import ConflictError, NotFoundError

__all__ = [
    "ItemState",
    "StaleJobs",
    "claim_job",
    "count_jobs",
    "create_job",
    "finish_job",
    "get_job",
    "heartbeat",
    "item_counts",
    "list_items",
    "list_jobs",
    "reap_stale_jobs",
    "request_cancel",
    "start_job",
]

MAX_PAGE = 1000


class ItemState:
    """The states of a :class:`JobItem` (plain strings in the database)."""

    PENDING = "pending"
    INDEXED = "indexed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    REMOVED = "removed"
    CANCELLED = "cancelled"
    FINISHED = (INDEXED, UNCHANGED, SKIPPED, FAILED, REMOVED, CANCELLED)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def create_job(
    session: Session, kind: JobKind, corpus_id: int | None, params: dict[str, Any],
    workspace_id: int | None = None,
) -> Job:
    """A queued job; its workspace is the corpus's unless given."""
    if workspace_id is None and corpus_id is not None:
        workspace_id = session.scalar(select(Corpus.workspace_id).where(Corpus.id == corpus_id))
    job = Job(kind=kind, state=JobState.QUEUED, corpus_id=corpus_id, params=params, total=0, done=0,
              failed=0, skipped=0, attempts=0, cancel_requested=False, workspace_id=workspace_id)
    session.add(job)
    session.flush()
    return job


def get_job(
    session: Session, job_id: str, *, for_update: bool = False, workspace_id: int | None = None
) -> Job:
    """The job ``job_id``; ``for_update`` locks its row (PostgreSQL) until the transaction ends.
    With ``workspace_id``, a job of another workspace is not found (its existence is not revealed)."""
    if len(job_id) > 32:
        raise NotFoundError(f"no job with id {job_id[:40]!r}")
    if for_update:
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    else:
        job = session.get(Job, job_id)
    if job is None or (workspace_id is not None and job.workspace_id != workspace_id):
        raise NotFoundError(f"no job with id {job_id[:40]!r}")
    return job


def start_job(session: Session, job: Job, total: int = 0) -> None:
    job.state = JobState.RUNNING
    job.started_at = job.started_at or _now()
    job.heartbeat_at = _now()
    job.total = total


def claim_job(session: Session, job_id: str) -> bool:
    """Mark ``job_id`` running with a fresh heartbeat before any slow setup (loading models), so
    that the watchdog does not take a job being started for a lost one. ``False`` when the job is
    finished or cancel-requested (whoever runs it then finishes or leaves it)."""
    now = _now()
    claimed = session.execute(
        update(Job).where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
                          Job.cancel_requested.is_(False))
        .values(state=JobState.RUNNING, heartbeat_at=now, started_at=func.coalesce(Job.started_at, now))
    )
    return bool(getattr(claimed, "rowcount", 0))


def heartbeat(session: Session, job_id: str) -> bool:
    """Refresh a running job's heartbeat: the sign of life :func:`reap_stale_jobs` looks for.
    ``False`` when the job is not running (finished meanwhile: nothing to keep alive)."""
    beat = session.execute(
        update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(heartbeat_at=_now())
    )
    return bool(getattr(beat, "rowcount", 0))


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


def request_cancel(session: Session, job_id: str, workspace_id: int | None = None) -> Job:
    """Ask the job to stop. A queued job is cancelled at once; a running one stops between batches.

    Cancelling a finished job is a :class:`ConflictError` (nothing to stop), except that cancelling
    a cancelled job again is accepted and changes nothing.
    """
    job = get_job(session, job_id, for_update=True, workspace_id=workspace_id)
    if job.state is JobState.CANCELLED:
        return job
    if job.state.finished:
        raise ConflictError(f"job {job.id} already {job.state.value}; there is nothing to cancel")
    job.cancel_requested = True
    if job.state is JobState.QUEUED:
        finish_job(session, job, JobState.CANCELLED, error="cancelled before it started")
    return job


def _job_filter(state: JobState | None, workspace_id: int | None, corpus_id: int | None) -> list[Any]:
    conditions: list[Any] = []
    if state is not None:
        conditions.append(Job.state == state)
    if workspace_id is not None:
        conditions.append(Job.workspace_id == workspace_id)
    if corpus_id is not None:
        conditions.append(Job.corpus_id == corpus_id)
    return conditions


def list_jobs(
    session: Session, *, state: JobState | None = None, limit: int = 50, offset: int = 0,
    workspace_id: int | None = None, corpus_id: int | None = None,
) -> list[Job]:
    """Jobs, newest first (of one workspace or corpus when given)."""
    query = select(Job).where(*_job_filter(state, workspace_id, corpus_id))
    query = query.order_by(Job.created_at.desc(), Job.id)
    return list(session.scalars(query.limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset))))


def count_jobs(
    session: Session, *, state: JobState | None = None, workspace_id: int | None = None,
    corpus_id: int | None = None,
) -> int:
    """How many jobs :func:`list_jobs` pages through."""
    query = select(func.count()).select_from(Job).where(*_job_filter(state, workspace_id, corpus_id))
    return int(session.scalar(query) or 0)


def list_items(
    session: Session, job_id: str, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[JobItem]:
    """A page of the job's per-document items in path order."""
    query = select(JobItem).where(JobItem.job_id == job_id).order_by(JobItem.path)
    if state is not None:
        query = query.where(JobItem.state == state)
    return list(session.scalars(query.limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset))))


def item_counts(session: Session, job_id: str) -> dict[str, int]:
    """How many of the job's items are in each state."""
    rows = session.execute(
        select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
    ).all()
    return {state: int(n) for state, n in rows}


@dataclass(frozen=True, slots=True)
class StaleJobs:
    requeue: list[str]  # to be sent to a worker again (attempts already counted)
    failed: list[str]  # out of attempts, now failed


def reap_stale_jobs(
    session: Session, *, stale_after: float, max_attempts: int, now: datetime | None = None
) -> StaleJobs:
    """The watchdog's decision, recorded: jobs not finished whose last sign of life (heartbeat, or
    creation for a job never started) is older than ``stale_after`` seconds.

    Each such job gets a fresh heartbeat (so it is not reaped again before the new attempt has had
    time to run) and is requeued. A running job uses up an attempt each time it is requeued without
    having made progress since the last time; out of attempts, it fails with why. A queued job is
    only sent again. Cancel-requested jobs are finished as cancelled. The caller queues the
    ``requeue`` ids after this session commits.
    """
    now = now or _now()
    cutoff = now - timedelta(seconds=stale_after)
    candidates = session.scalars(
        select(Job).where(
            Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
            or_(Job.heartbeat_at < cutoff, (Job.heartbeat_at.is_(None)) & (Job.created_at < cutoff)),
        ).with_for_update(skip_locked=True)
    ).all()
    requeue: list[str] = []
    failed: list[str] = []
    for job in candidates:
        last = _aware(job.heartbeat_at or job.created_at)
        if last >= cutoff:  # SQLite compares naive strings; re-check with real datetimes
            continue
        if job.cancel_requested:
            finish_job(session, job, JobState.CANCELLED, result=job.result,
                       error="cancelled (its worker stopped before finishing)")
            continue
        job.heartbeat_at = now
        requeue.append(job.id)
        if job.state is JobState.QUEUED:
            # Never started: waiting behind other work, or its message was lost with the broker.
            # Sending it again is harmless (tasks are idempotent); it does not use up attempts.
            continue
        # Attempts count requeues without progress: a job that moves between requeues (e.g. one
        # waiting in a long queue between batches) is not failing.
        if job.done > int(job.params.get("watchdog_done", -1)):
            job.attempts = 0
        job.params = {**job.params, "watchdog_done": job.done}
        if job.attempts + 1 >= max_attempts:
            requeue.pop()
            finish_job(
                session, job, JobState.FAILED, result=job.result,
                error=(f"no heartbeat for {stale_after:.0f}s and no progress after "
                       f"{job.attempts + 1} attempts: its worker stops or the broker loses the job"),
            )
            failed.append(job.id)
            continue
        job.attempts += 1
    return StaleJobs(requeue=requeue, failed=failed)
