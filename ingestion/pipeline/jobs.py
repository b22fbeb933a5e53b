"""Running an ingest job recorded in SQL: plan it, then index its batches here or on workers.

The same functions run in-process (embedded mode, the CLI) and in Celery workers (server mode):
the only difference is ``dispatch``, which hands each batch to a worker instead of running it here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from corral.core.db import JobState
from corral.core.errors import CorralError
from corral.core.services import finish_job, get_job
from corral.core.services.jobs import cancel_now
from corral.ingestion.pipeline.batch import index_batch
from corral.ingestion.pipeline.finish import finish_if_done
from corral.ingestion.pipeline.plan import plan_job
from corral.ingestion.pipeline.report import IngestProgress, ProgressCallback
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.sources.spec import discard_upload, open_spec, spec_from_params

__all__ = ["Dispatch", "fail_job", "run_ingest_job"]

log = logging.getLogger(__name__)

Dispatch = Callable[[str, int], None]  # (job id, batch number): queue that batch on a worker


def run_ingest_job(
    services: IngestServices,
    job_id: str,
    *,
    dispatch: Dispatch | None = None,
    progress: ProgressCallback | None = None,
) -> JobState:
    """Run ``job_id``: plan it, then index every pending batch — here, or via ``dispatch``.
    (:func:`~corral.ingestion.pipeline.configured.run_job` is this with the claim and heartbeat.)

    Returns the job's state afterwards: final when run here; ``running`` when batches were handed
    out (the last batch to finish finishes the job). A job already finished is left alone, so a
    redelivered message does nothing. Errors of ours that concern the whole job (a source that does
    not exist) fail it with their message; others are recorded too and re-raised.
    """
    with services.session_factory.begin() as session:
        job = get_job(session, job_id)
        if job.state.finished:
            return job.state
        if job.cancel_requested:  # before it started, or (run again) while it ran
            cancel_now(session, job)
            discard_upload(job.params)
            return JobState.CANCELLED
        params = dict(job.params)
    try:
        batches = plan_job(services, job_id, open_spec(spec_from_params(params)))
    except CorralError as exc:
        fail_job(services, job_id, str(exc))
        return JobState.FAILED
    if dispatch is not None:
        log.info("ingest job %s: %d batches to index", job_id, len(batches))
        for batch in batches:
            dispatch(job_id, batch)
        return finish_if_done(services, job_id) or JobState.RUNNING

    chunks = failed = done = 0
    with services.session_factory.begin() as session:
        total = get_job(session, job_id).total
    for batch in batches:
        result = index_batch(services, job_id, batch)
        chunks, failed, done = chunks + result.chunks, failed + result.failed, done + result.documents
        if progress is not None:
            progress(IngestProgress(done=done, total=total, chunks=chunks, failed=failed,
                                    current=result.last_path))
    state = finish_if_done(services, job_id)
    if state is None:  # a batch left items pending: only a concurrent writer could do that
        raise CorralError(f"job {job_id} still has pending documents after all its batches ran")
    return state


def fail_job(services: IngestServices, job_id: str, error: str) -> None:
    with services.session_factory.begin() as session:
        job = get_job(session, job_id)
        if not job.state.finished:
            finish_job(session, job, JobState.FAILED, result=job.result, error=error[:4000])
            discard_upload(job.params)
