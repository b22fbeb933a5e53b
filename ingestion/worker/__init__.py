"""The Celery app (``celery -A corral.ingestion.worker worker``), its tasks and the watchdog."""

from corral.ingestion.worker import watchdog as _watchdog  # noqa: F401 - connects worker signals
from corral.ingestion.worker.app import app
from corral.ingestion.worker.handoff import hand_off, resume_interrupted_jobs
from corral.ingestion.worker.tasks import TRANSIENT_ERRORS, ingest_batch, ingest_job, send_batch
from corral.ingestion.worker.watchdog import run_watchdog

__all__ = [
    "TRANSIENT_ERRORS",
    "app",
    "hand_off",
    "ingest_batch",
    "ingest_job",
    "resume_interrupted_jobs",
    "run_watchdog",
    "send_batch",
]
