"""Celery tasks: each a thin shell over a plain, tested function, passed ids, never objects."""

from __future__ import annotations

from corral.ingestion.pipeline import run_ingest_job
from corral.ingestion.worker import names
from corral.ingestion.worker.app import app


@app.task(name=names.INGEST_JOB, acks_late=True)  # type: ignore[untyped-decorator]
def ingest_job(job_id: str) -> str:
    return run_ingest_job(job_id).value
