"""Submitting background jobs: over Celery in server mode, on an in-process worker thread otherwise."""

from corral.platform.jobs.dispatch import check_ingest_path, resume_embedded_jobs, submit_ingest

__all__ = ["check_ingest_path", "resume_embedded_jobs", "submit_ingest"]
