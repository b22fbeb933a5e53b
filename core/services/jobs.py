"""Job records: the durable truth about background work, whatever the broker does.

A job moves ``queued → running → succeeded | failed | cancelled``. While it runs, whoever works on it
refreshes ``heartbeat_at``; :func:`reap_stale_jobs` (the watchdog) finds jobs whose heartbeat
stopped — a worker killed, a broker that lost its messages — and hands them back to be queued again,
up to a number of attempts, after which they fail with the reason. Per-document progress is in
``JobItem`` rows.

One ingest job at a time per corpus: :func:`active_ingest` names the one queued or running. A job
that fails or is cancelled and whose request created its corpus removes that corpus again when it
holds nothing (no documents, no other job, no run): a refused ingest leaves no empty corpus behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Document, Job, JobKind, JobState, Source
from corral.core.db.models import JobItem, Run
from corral.core.errors import ConflictError, NotFoundError
from corral.core.services.liveness import record_watchdog
from corral.core.services.webhooks import enqueue_event, job_event

__all__ = [
    "ItemState",
    "StaleJobs",
    "active_ingest",
    "cancel_message",
    "cancel_now",
    "claim_job",
    "count_jobs",
    "create_job",
    "finish_job",
    "get_job",
    "heartbeat",
    "item_counts",
    "list_items",
    "list_jobs",
    "mark_resumable",
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


RESUME = "resume"  # params flag: a running job handed out again (watchdog, restart) may be taken


def claim_job(session: Session, job_id: str) -> bool:
    """Mark ``job_id`` running with a fresh heartbeat before any slow setup (loading models), so
    that the watchdog does not take a job being started for a lost one. ``False`` when the job is
    finished or cancel-requested (whoever runs it then finishes or leaves it), and when it is
    already running and was not handed out again (:data:`RESUME`): a second message for one job —
    a queued job sent again while it waited, then taken by two workers — must not fan out its
    batches twice."""
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.state.finished:
        return False
    if job.state is JobState.RUNNING and not job.params.get(RESUME):
        return False
    if job.params.get(RESUME):
        job.params = {k: v for k, v in job.params.items() if k != RESUME}
    now = _now()
    job.state, job.heartbeat_at = JobState.RUNNING, now
    job.started_at = job.started_at or now
    return True


def mark_resumable(job: Job) -> None:
    """Let the next message for the running ``job`` take it up (see :func:`claim_job`)."""
    job.params = {**job.params, RESUME: True}


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
    announce = job.finished_at is None  # one job.finished per job
    job.state = state
    job.result = result
    job.error = error
    job.finished_at = _now()
    job.heartbeat_at = job.finished_at
    if announce and job.workspace_id is not None:  # webhooks, sent once this commits
        enqueue_event(session, job.workspace_id, "job.finished", job_event(session, job))
    if state in (JobState.FAILED, JobState.CANCELLED):
        _drop_created_corpus(session, job)


def active_ingest(session: Session, corpus_id: int) -> Job | None:
    """The ingest job of ``corpus_id`` that is queued or running, if any (the oldest)."""
    return session.scalar(
        select(Job).where(Job.corpus_id == corpus_id, Job.kind == JobKind.INGEST,
                          Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .order_by(Job.created_at, Job.id).limit(1))


def cancel_message(session: Session, job: Job) -> str:
    """How far a cancelled job got: before it listed anything, or after how many documents."""
    counts = item_counts(session, job.id)
    planned = sum(counts.values()) - counts.get(ItemState.REMOVED, 0)
    if planned == 0:
        return "cancelled before it started"
    done = planned - counts.get(ItemState.PENDING, 0) - counts.get(ItemState.CANCELLED, 0)
    return f"cancelled while running after {done} of {planned} documents"


def cancel_now(session: Session, job: Job, note: str | None = None) -> None:
    """Finish ``job`` as cancelled: its pending documents are marked cancelled, and the error says
    how far it got (:func:`cancel_message`), with ``note`` after it."""
    message = cancel_message(session, job)
    session.execute(update(JobItem).where(JobItem.job_id == job.id,
                                          JobItem.state == ItemState.PENDING)
                    .values(state=ItemState.CANCELLED, error="job cancelled"))
    finish_job(session, job, JobState.CANCELLED, result=job.result,
               error=f"{message} ({note})" if note else message)


def _drop_created_corpus(session: Session, job: Job) -> None:
    """Remove the corpus ``job``'s request created, if it holds nothing; the job stays, detached
    (its parameters still name the corpus)."""
    corpus_id = job.corpus_id
    if corpus_id is None or not job.params.get("new_corpus"):
        return
    session.flush()
    # The same lock submitting an ingest takes: nobody adds a job to it while we look.
    if session.scalar(select(Corpus.id).where(Corpus.id == corpus_id).with_for_update()) is None:
        return
    for held in (select(Document.id).where(Document.corpus_id == corpus_id),
                 select(Job.id).where(Job.corpus_id == corpus_id, Job.id != job.id),
                 select(Run.id).where(Run.corpus_id == corpus_id)):
        if session.scalar(held.limit(1)) is not None:
            return
    job.corpus_id = None
    session.flush()
    session.execute(delete(Source).where(Source.corpus_id == corpus_id))
    session.execute(delete(Corpus).where(Corpus.id == corpus_id))


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
        cancel_now(session, job)
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
    time to run) and is requeued (a queued one only after ``2 * stale_after``). A running job uses
    up an attempt each time it is requeued without having made progress since the last time; out
    of attempts, it fails with why. A queued job is only sent again. Cancel-requested jobs are
    finished as cancelled. Each decision is recorded on the job (``params["watchdog"]``). The
    caller queues the ``requeue`` ids after this session commits.
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
            job.params = record_watchdog(job.params, "cancelled", "cancel requested and no "
                                         f"heartbeat for {stale_after:.0f}s", now)
            cancel_now(session, job, "its worker stopped before finishing")
            continue
        if job.state is JobState.QUEUED and last >= now - timedelta(seconds=2 * stale_after):
            continue  # a queued job waits twice as long: a long queue is not a lost message
        job.heartbeat_at = now
        requeue.append(job.id)
        if job.state is JobState.QUEUED:
            # Never started: waiting behind other work, or its message was lost with the broker.
            # Sending it again is harmless (tasks are idempotent); it does not use up attempts.
            job.params = record_watchdog(job.params, "requeued", "still queued after "
                                         f"{stale_after:.0f}s: its message may have been lost", now)
            continue
        # Attempts count requeues without progress: a job that moves between requeues (e.g. one
        # waiting in a long queue between batches) is not failing.
        if job.done > int(job.params.get("watchdog_done", -1)):
            job.attempts = 0
        job.params = {**job.params, "watchdog_done": job.done}
        if job.attempts + 1 >= max_attempts:
            requeue.pop()
            job.params = record_watchdog(job.params, "failed", f"no heartbeat for {stale_after:.0f}s "
                                         f"and no progress after {job.attempts + 1} attempts", now)
            finish_job(
                session, job, JobState.FAILED, result=job.result,
                error=(f"no heartbeat for {stale_after:.0f}s and no progress after "
                       f"{job.attempts + 1} attempts: its worker stops or the broker loses the job"),
            )
            failed.append(job.id)
            continue
        job.attempts += 1
        mark_resumable(job)
        job.params = record_watchdog(job.params, "requeued", f"no heartbeat for {stale_after:.0f}s "
                                     f"(attempt {job.attempts} of {max_attempts})", now)
    return StaleJobs(requeue=requeue, failed=failed)
