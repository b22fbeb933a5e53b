"""Running an ingest job recorded in SQL: the same function in-process and in a Celery worker."""

from __future__ import annotations

import logging
from pathlib import Path

from corral.core.db import JobState, session_scope
from corral.core.errors import CorralError
from corral.core.services import finish_job, get_job, heartbeat, start_job
from corral.ingestion.pipeline.configured import ingest_configured

__all__ = ["run_ingest_job"]

log = logging.getLogger(__name__)


def run_ingest_job(job_id: str) -> JobState:
    """Run the ingest job ``job_id`` to a final state and record it; returns that state.

    A job already finished is left alone (a redelivered message does nothing). Errors of ours mark
    the job failed with their message; anything else is recorded too, then re-raised for the logs.
    """
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.state.finished:
            return job.state
        start_job(session, job)
        corpus_name, path = job.params["corpus"], Path(job.params["path"])

    def progress(done: int, total: int, _current: str) -> None:
        with session_scope() as s:
            j = get_job(s, job_id)
            j.total = total
            heartbeat(s, j, done)

    try:
        report = ingest_configured(corpus_name, path, progress)
    except CorralError as exc:
        _finish(job_id, JobState.FAILED, error=str(exc))
        return JobState.FAILED
    except Exception as exc:
        _finish(job_id, JobState.FAILED, error=f"internal error: {exc!r}")
        raise
    _finish(job_id, JobState.SUCCEEDED, result=report.to_dict())
    log.info("ingest job %s: %d indexed, %d failed", job_id, report.indexed, report.failed)
    return JobState.SUCCEEDED


def _finish(job_id: str, state: JobState, *, result: dict[str, object] | None = None,
            error: str | None = None) -> None:
    with session_scope() as session:
        finish_job(session, get_job(session, job_id), state, result=result, error=error)
