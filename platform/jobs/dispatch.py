"""Job submission. The Job row is written first, then the id is handed to whoever runs it.

Server mode sends the id to the Celery queue by task name; embedded mode runs the same Celery task
in-process (``Task.apply``) on a single background thread, so SQLite sees one writer at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import select

from corral.core.config import Mode, get_settings
from corral.core.db import Job, JobKind, JobState, SourceKind, session_scope
from corral.core.errors import InvalidInputError, PermissionDeniedError, ServiceUnavailableError
from corral.core.services import (
    StaleJobs,
    create_job,
    finish_job,
    get_job,
    get_or_create_corpus,
    request_cancel,
)
from corral.ingestion.pipeline import job_params
from corral.ingestion.worker import ingest_job, names, run_watchdog

__all__ = ["cancel_job", "check_ingest_path", "resume_embedded_jobs", "submit_ingest", "watchdog_once"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-job")


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Celery:
    """A Celery app used only to send tasks by name; it needs none of the task code."""
    return Celery("corral-producer", broker=broker_url, set_as_current=False)


def check_ingest_path(raw: str) -> Path:
    """``raw`` as an absolute path the server may read, or a clear refusal.

    Outside development, paths must lie under ``CORRAL_INGEST_ALLOWED_ROOTS``: an API that reads
    any path it is sent would hand the server's files to every caller.
    """
    if not raw or "\x00" in raw:
        raise InvalidInputError("the path is empty or contains a NUL byte")
    path = Path(raw)
    if not path.is_absolute():
        raise InvalidInputError(f"the path must be absolute: {raw[:200]!r}")
    settings = get_settings()
    roots = [r.resolve() for r in settings.ingest_allowed_roots]
    if roots:
        resolved = path.resolve()
        if not any(resolved.is_relative_to(r) for r in roots):
            raise PermissionDeniedError(
                f"{raw[:200]!r} is outside the allowed ingest roots ({', '.join(map(str, roots))})"
            )
    elif settings.environment != "development":
        raise PermissionDeniedError(
            "ingesting server paths is disabled: set CORRAL_INGEST_ALLOWED_ROOTS"
        )
    if not path.exists():
        raise InvalidInputError(f"path does not exist: {raw[:200]}")
    return path


def submit_ingest(
    corpus: str, path: Path | str, *, kind: SourceKind | str = SourceKind.PATH,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Record an ingest job for a source (by default the folder or file ``path``) into ``corpus``
    and start it; returns the job id."""
    params = job_params(corpus, path, kind, options)
    with session_scope() as session:
        corpus_row = get_or_create_corpus(session, corpus)
        job = create_job(session, JobKind.INGEST, corpus_row.id, params)
        job_id = job.id
    try:
        _send(job_id)
    except ServiceUnavailableError as exc:
        with session_scope() as session:
            finish_job(session, get_job(session, job_id), JobState.FAILED,
                       error=f"could not queue the job: {exc}")
        raise
    return job_id


def _send(job_id: str) -> None:
    """Hand ``job_id`` to whoever runs jobs: the Celery queue, or this process's job thread."""
    settings = get_settings()
    if settings.mode is Mode.SERVER:
        try:
            _producer(settings.redis_url or "").send_task(
                names.INGEST_JOB, args=[job_id], queue=settings.ingest_queue
            )
        except KombuOperationalError as exc:
            raise ServiceUnavailableError(f"the job broker is unreachable: {exc}") from exc
    else:
        _executor().submit(ingest_job.apply, args=[job_id]).add_done_callback(_log_failure)


def cancel_job(job_id: str) -> Job:
    """Ask ``job_id`` to stop (see :func:`corral.core.services.request_cancel`); returns the job."""
    with session_scope() as session:
        return request_cancel(session, job_id)


def watchdog_once() -> StaleJobs:
    """One watchdog pass from this process: requeue or fail jobs whose heartbeat stopped."""
    return run_watchdog(_send)


def resume_embedded_jobs() -> list[str]:
    """Restart the jobs a previous embedded server left queued or running; returns their ids.

    In embedded mode this process is the only one that runs jobs, so any job not finished when it
    starts was interrupted by a stop. Ingest jobs are idempotent, so running them again is safe.
    """
    if get_settings().mode is not Mode.EMBEDDED:
        return []
    with session_scope() as session:
        ids = list(session.scalars(
            select(Job.id).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .order_by(Job.created_at)
        ))
    for job_id in ids:
        log.warning("resuming interrupted job %s", job_id)
        _executor().submit(ingest_job.apply, args=[job_id]).add_done_callback(_log_failure)
    return ids


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("in-process job failed: %r", exc)
