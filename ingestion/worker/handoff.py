"""Handing a recorded job to whoever runs jobs in this mode.

Server mode sends the id to the Celery queue by task name, through a producer that needs none of
the task code. Embedded mode runs the same Celery task in this process (``Task.apply``) on a single
background thread, so SQLite sees one writer at a time.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import select

from corral.core.config import Mode, get_settings
from corral.core.db import Job, JobState, session_scope
from corral.core.errors import ServiceUnavailableError
from corral.core.services.jobs import mark_resumable
from corral.ingestion.worker import names
from corral.ingestion.worker.tasks import ingest_job

__all__ = ["hand_off", "resume_interrupted_jobs"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-job")


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Celery:
    return Celery("corral-producer", broker=broker_url, set_as_current=False)


def hand_off(job_id: str) -> None:
    """Queue ``job_id`` (server mode) or start it on this process's job thread (embedded mode).

    Raises :class:`ServiceUnavailableError` when the broker cannot be reached.
    """
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


def resume_interrupted_jobs() -> list[str]:
    """Restart the jobs a previous embedded process left queued or running; returns their ids.

    In embedded mode this process is the only one that runs jobs, so any job not finished when it
    starts was interrupted by a stop. Ingest jobs are idempotent, so running them again is safe.
    """
    if get_settings().mode is not Mode.EMBEDDED:
        return []
    with session_scope() as session:
        jobs = list(session.scalars(
            select(Job).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .order_by(Job.created_at)
        ))
        for job in jobs:
            if job.state is JobState.RUNNING:
                mark_resumable(job)  # its runner is gone with the previous process
        ids = [job.id for job in jobs]
    for job_id in ids:
        log.warning("resuming interrupted job %s", job_id)
        hand_off(job_id)
    return ids


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("in-process job failed: %r", exc)
