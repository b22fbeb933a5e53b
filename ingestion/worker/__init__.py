"""The Celery app (``celery -A corral.ingestion.worker worker``), its tasks and the watchdog."""

from corral.ingestion.worker import watchdog as _watchdog  # noqa: F401 - connects worker signals
from corral.ingestion.worker.app import app
from corral.ingestion.worker.tasks import (
    TRANSIENT_ERRORS,
    ingest_batch,
    ingest_job,
    send_batch,
    send_job,
)
from corral.ingestion.worker.watchdog import run_watchdog

__all__ = [
    "TRANSIENT_ERRORS",
    "app",
    "ingest_batch",
    "ingest_job",
    "run_watchdog",
    "send_batch",
    "send_job",
]
