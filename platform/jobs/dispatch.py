"""The platform's handle on running jobs: stop one, run the watchdog, resume after a restart.

Jobs are submitted through ingestion's one entry, :func:`corral.ingestion.ingest.submit_ingest`.
"""

from __future__ import annotations

from corral.core.db import Job, session_scope
from corral.core.services import StaleJobs, request_cancel
from corral.ingestion.sources.spec import discard_upload
from corral.ingestion.worker import hand_off, resume_interrupted_jobs, run_watchdog

__all__ = ["cancel_job", "resume_embedded_jobs", "watchdog_once"]


def cancel_job(job_id: str, workspace_id: int | None = None) -> Job:
    """Ask ``job_id`` (of ``workspace_id`` when given) to stop (see
    :func:`corral.core.services.request_cancel`); returns the job."""
    with session_scope() as session:
        job = request_cancel(session, job_id, workspace_id)
    if job.state.finished:  # a queued job is cancelled at once: its staged upload goes with it
        discard_upload(job.params)
    return job


def watchdog_once() -> StaleJobs:
    """One watchdog pass from this process: requeue or fail jobs whose heartbeat stopped."""
    return run_watchdog(hand_off)


def resume_embedded_jobs() -> list[str]:
    """At startup of an embedded server: restart the jobs a previous one left unfinished."""
    return resume_interrupted_jobs()
