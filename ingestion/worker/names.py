"""Celery task names, explicit and stable: producers queue by name, never by import path."""

INGEST_JOB = "corral.ingest.run_job"
INGEST_BATCH = "corral.ingest.run_batch"
