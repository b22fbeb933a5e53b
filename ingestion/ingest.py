"""The one way into ingestion: a source spec and a corpus name in, a job out.

Every door — ``corral ingest``, ``POST /v1/corpora/{name}/ingest``, the dashboard, the Slack bot —
turns its input into a :data:`~corral.ingestion.sources.SourceSpec` and calls :func:`submit_ingest`,
which checks the ingest policy once, records the corpus and the job, and starts it: here and now
(``here=True``: the CLI in embedded mode, with progress) or handed to whoever runs jobs in this mode
(the Celery queue, or the embedded server's job thread). Both run the same claim, heartbeat and
pipeline (:func:`~corral.ingestion.pipeline.run_job`).

Local paths: the CLI is the local user, and reads what the ingest policy allows it (any path in
development when no roots are set). Doors that serve remote callers pass ``remote=True``: a path on
this machine (or a local git repository) is then read only under ``CORRAL_INGEST_ALLOWED_ROOTS``,
in every environment. Uploads are read only from ``<data dir>/uploads``, where the upload route
stages them; server-mode workers must mount the same data dir volume to read them.
"""

from __future__ import annotations

from pathlib import Path

from corral.core.config import get_settings
from corral.core.db import JobKind, JobState, get_sessionmaker
from corral.core.errors import ConflictError, CorralError, IngestError, ServiceUnavailableError
from corral.core.services import (
    DEFAULT_WORKSPACE,
    create_job,
    finish_job,
    get_job,
    validate_corpus_name,
)
from corral.core.services.corpora import ensure_corpus, lock_corpus
from corral.core.services.jobs import active_ingest
from corral.ingestion.pipeline import IngestReport, ProgressCallback, run_job
from corral.ingestion.sources.spec import (
    PathSpec,
    SourceSpec,
    check_spec,
    spec_params,
    upload_root,
)
from corral.ingestion.worker.handoff import hand_off

__all__ = ["ingest_now", "job_report", "submit_ingest", "upload_root"]


def submit_ingest(
    corpus: str, spec: SourceSpec, *, here: bool = False, progress: ProgressCallback | None = None,
    workspace: str = DEFAULT_WORKSPACE, remote: bool = False,
) -> str:
    """Record a job indexing ``spec`` into ``corpus`` of ``workspace`` (created if new) and start it;
    its id.

    Refuses, before anything is written, a source the ingest policy forbids
    (:class:`~corral.core.errors.PermissionDeniedError`) or one that is malformed or missing
    (:class:`~corral.core.errors.InvalidInputError`); ``remote`` applies the policy for remote
    callers (see the module docstring). One ingest runs per corpus at a time: while one is queued
    or running, another is a :class:`~corral.core.errors.ConflictError` naming it (``job_id``).
    The corpus row is locked while this checks and records the job, so two concurrent requests
    make exactly one job. With ``here`` the job runs in this thread
    and is finished when this returns; otherwise :func:`hand_off` starts it, and a broker that
    cannot be reached fails the job with the reason and raises
    :class:`~corral.core.errors.ServiceUnavailableError`.
    """
    validate_corpus_name(corpus)
    settings = get_settings()
    check_spec(spec, settings.ingest_allowed_roots,
               development=settings.environment == "development" and not remote,
               git_allowed_hosts=settings.git_allowed_hosts, upload_root=upload_root())
    sf = get_sessionmaker()
    with sf.begin() as session:
        for _ in range(3):  # a corpus removed between finding and locking it is created again
            row, created = ensure_corpus(session, corpus, workspace)
            if lock_corpus(session, row.id):
                break
        else:
            raise ConflictError(f"corpus {corpus!r} is being removed; retry")
        running = active_ingest(session, row.id)
        if running is not None:
            raise ConflictError(
                f"corpus {corpus!r} is already being ingested by job {running.id} "
                f"({running.state.value}); wait for it to finish, or cancel it", job_id=running.id)
        params = {"corpus": corpus, **spec_params(spec)}
        if created:
            params["new_corpus"] = True  # removed again if the job fails or is cancelled empty
        job_id = create_job(session, JobKind.INGEST, row.id, params).id
    if here:
        run_job(job_id, progress=progress)
        return job_id
    try:
        hand_off(job_id)
    except ServiceUnavailableError as exc:
        with sf.begin() as session:
            finish_job(session, get_job(session, job_id), JobState.FAILED,
                       error=f"could not queue the job: {exc}")
        raise
    return job_id


def job_report(job_id: str) -> IngestReport:
    """The report of the finished ingest job ``job_id``; an error with the job's own when it did
    not succeed."""
    with get_sessionmaker()() as session:
        job = get_job(session, job_id)
        if job.state is not JobState.SUCCEEDED or job.result is None:
            raise (IngestError if job.state is JobState.FAILED else CorralError)(
                f"ingest job {job_id} {job.state.value}: {job.error}")
        return IngestReport.from_dict(job.result)


def ingest_now(
    corpus: str, source: SourceSpec | Path, progress: ProgressCallback | None = None,
) -> IngestReport:
    """Index ``source`` (a spec, or a local folder or file) into ``corpus`` in this thread, as a
    job recorded like any other; its report."""
    spec = PathSpec(source.absolute()) if isinstance(source, Path) else source
    return job_report(submit_ingest(corpus, spec, here=True, progress=progress))
