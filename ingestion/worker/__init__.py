"""The Celery app (``celery -A corral.ingestion.worker worker``) and its tasks."""

from corral.ingestion.worker.app import app
from corral.ingestion.worker.tasks import ingest_job

__all__ = ["app", "ingest_job"]
