"""Background jobs as the platform's doors see them: cancel and watch. They are submitted through
ingestion's one entry, :func:`corral.ingestion.ingest.submit_ingest`."""

from corral.platform.jobs.dispatch import cancel_job, resume_embedded_jobs, watchdog_once

__all__ = ["cancel_job", "resume_embedded_jobs", "watchdog_once"]
