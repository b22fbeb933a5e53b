"""Celery tasks: each a thin shell over a plain, tested function, passed ids, never objects.

Both tasks are idempotent (see :mod:`corral.ingestion.pipeline.batch`), hence ``acks_late``: a
message is acknowledged only once its work is committed, and a worker lost mid-task gets it
redelivered. Transient errors — the database, broker or vector store unreachable — are retried
with exponential backoff; a batch that still fails marks its documents failed and the job goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from corral.core.config import Mode, get_settings
from corral.core.errors import ServiceUnavailableError
from corral.ingestion.pipeline import (
    configured_services,
    fail_batch,
    fail_job,
    finish_if_done,
    run_batch,
    run_job,
)
from corral.ingestion.worker import names
from corral.ingestion.worker.app import app

__all__ = ["TRANSIENT_ERRORS", "ingest_batch", "ingest_job", "send_batch"]

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ServiceUnavailableError, SqlOperationalError, RedisConnectionError, KombuOperationalError,
    ConnectionError, TimeoutError,
)
_RETRY = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 6,
}


def send_batch(job_id: str, batch: int) -> None:
    """Queue one batch of ``job_id`` on the ingest queue (server mode, from the job's task; jobs
    themselves are queued by :func:`~corral.ingestion.worker.handoff.hand_off`)."""
    ingest_batch.apply_async(args=[job_id, batch], queue=get_settings().ingest_queue)


class _JobTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        fail_job(configured_services(), args[0], f"job failed: {exc!r}")


class _BatchTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        # Retries spent (or a bug): these documents fail with the reason; the job goes on.
        services = configured_services()
        job_id, batch = args[0], args[1]
        fail_batch(services, job_id, batch, f"batch failed after retries: {exc!r}")
        finish_if_done(services, job_id)


@app.task(name=names.INGEST_JOB, base=_JobTask, **_RETRY)  # type: ignore[untyped-decorator]
def ingest_job(job_id: str) -> str:
    dispatch = send_batch if get_settings().mode is Mode.SERVER else None
    return run_job(job_id, dispatch=dispatch).value


@app.task(name=names.INGEST_BATCH, base=_BatchTask, **_RETRY)  # type: ignore[untyped-decorator]
def ingest_batch(job_id: str, batch: int) -> str:
    state = run_batch(job_id, batch)
    return state.value if state else "running"
