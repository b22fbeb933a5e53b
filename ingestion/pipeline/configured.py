"""The pipeline wired to the configured services: what the worker's tasks and in-process runs call.

:func:`run_job` and :func:`run_batch` are the whole of a job's life wherever it runs — a Celery
worker, the embedded server's job thread or the CLI's own process: claim the job, keep its heartbeat
alive, do the work.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from corral.core.config import get_settings
from corral.core.db import Job, JobState, get_sessionmaker
from corral.core.index import get_keyword_index, get_vector_store
from corral.core.services.jobs import claim_job
from corral.ingestion.embedding import get_embedder
from corral.ingestion.pipeline.batch import index_batch
from corral.ingestion.pipeline.finish import finish_if_done
from corral.ingestion.pipeline.heartbeat import keep_alive
from corral.ingestion.pipeline.jobs import Dispatch, run_ingest_job
from corral.ingestion.pipeline.report import ProgressCallback
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.tokens import get_token_counter

__all__ = ["configured_services", "heartbeat_seconds", "run_batch", "run_job"]

log = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    """How often a running job beats: four times per ``CORRAL_JOB_STALE_SECONDS``."""
    return max(0.5, get_settings().job_stale_seconds / 4)


def configured_services() -> IngestServices:
    """The configured database, stores and models (each loaded once per process)."""
    settings = get_settings()
    return IngestServices(
        session_factory=get_sessionmaker(),
        embedder=get_embedder(),
        store=get_vector_store(),
        keyword=get_keyword_index(),
        token_counter=get_token_counter(),
        max_file_bytes=settings.max_file_bytes,
        chunk_chars=settings.chunk_chars,
        batch_size=settings.ingest_batch_size,
    )


def run_job(
    job_id: str, *, dispatch: Dispatch | None = None, progress: ProgressCallback | None = None,
) -> JobState:
    """Claim ``job_id``, then run it (:func:`run_ingest_job`) with its heartbeat kept alive from
    the first moment: loading the models takes seconds on a fresh process."""
    sf = get_sessionmaker()
    with sf.begin() as session:
        claimed = claim_job(session, job_id)
        state = session.scalar(select(Job.state).where(Job.id == job_id))
    if not claimed and state is JobState.RUNNING:
        # Another message for a job someone is running (it was sent again while it waited):
        # running it too would hand out its batches twice.
        log.info("ingest job %s is already running: duplicate message ignored", job_id)
        return JobState.RUNNING
    with keep_alive(sf, job_id, heartbeat_seconds()):
        return run_ingest_job(configured_services(), job_id, dispatch=dispatch, progress=progress)


def run_batch(job_id: str, batch: int) -> JobState | None:
    """Index one batch of ``job_id`` with its heartbeat kept alive, and finish the job if it was
    the last; the job's final state, or ``None`` while batches remain."""
    with keep_alive(get_sessionmaker(), job_id, heartbeat_seconds()):
        services = configured_services()
        index_batch(services, job_id, batch)
        return finish_if_done(services, job_id)
