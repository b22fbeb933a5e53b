"""Submitting background jobs: over Celery in server mode, on an in-process worker thread otherwise."""

from corral.platform.jobs.dispatch import (
    cancel_job,
    check_ingest_path,
    resume_embedded_jobs,
    submit_ingest,
    watchdog_once,
)

__all__ = ["cancel_job", "check_ingest_path", "resume_embedded_jobs", "submit_ingest", "watchdog_once"]
