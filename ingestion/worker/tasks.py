"""Celery tasks: each a thin shell over a plain, tested function, passed ids, never objects.

Both tasks are idempotent (see :mod:`corral.ingestion.pipeline.batch`), hence ``acks_late``: a
message is acknowledged only once its work is committed, and a worker lost mid-task gets it
redelivered. Transient errors — the database, broker or vector store unreachable — are retried
with exponential backoff; a batch that still fails marks its documents failed and the job goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from corral.core.config import Mode, get_settings
from corral.core.db import get_sessionmaker
from corral.core.errors import ServiceUnavailableError
from corral.ingestion.pipeline import (
    configured_services,
    fail_batch,
    fail_job,
    finish_if_done,
    index_batch,
    run_ingest_job,
)
from corral.ingestion.pipeline.heartbeat import claim, keep_alive
from corral.ingestion.worker import names
from corral.ingestion.worker.app import app

__all__ = ["TRANSIENT_ERRORS", "ingest_batch", "ingest_job", "send_batch", "send_job"]

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


def send_job(job_id: str) -> None:
    """Queue ``job_id`` on the ingest queue (server mode)."""
    ingest_job.apply_async(args=[job_id], queue=get_settings().ingest_queue)


def send_batch(job_id: str, batch: int) -> None:
    """Queue one batch of ``job_id`` on the ingest queue (server mode)."""
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


@contextmanager
def _alive(job_id: str) -> Iterator[None]:
    """Heartbeat from the task's first moment: loading models takes seconds on a fresh worker."""
    sf = get_sessionmaker()
    with keep_alive(sf, job_id, max(0.5, get_settings().job_stale_seconds / 4)):
        yield


@app.task(name=names.INGEST_JOB, base=_JobTask, **_RETRY)  # type: ignore[untyped-decorator]
def ingest_job(job_id: str) -> str:
    claim(get_sessionmaker(), job_id)
    dispatch = send_batch if get_settings().mode is Mode.SERVER else None
    with _alive(job_id):
        return run_ingest_job(configured_services(), job_id, dispatch=dispatch).value


@app.task(name=names.INGEST_BATCH, base=_BatchTask, **_RETRY)  # type: ignore[untyped-decorator]
def ingest_batch(job_id: str, batch: int) -> str:
    with _alive(job_id):
        services = configured_services()
        index_batch(services, job_id, batch)
        state = finish_if_done(services, job_id)
    return state.value if state else "running"
