"""``POST /v1/corpora/{name}/documents``: files uploaded into a corpus, indexed as a job."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from corral.core.config import get_settings
from corral.core.db import session_scope
from corral.core.errors import ConflictError
from corral.core.services import find_corpus, validate_corpus_name
from corral.core.services.idempotency import fingerprint, once
from corral.core.services.jobs import active_ingest
from corral.ingestion.ingest import submit_ingest, upload_root
from corral.platform.api.auth import IngestCaller
from corral.platform.api.deps import IdempotencyKeyHeader
from corral.platform.api.schemas import JobAccepted
from corral.platform.api.uploads import UploadLimits, receive_upload

router = APIRouter(prefix="/corpora", tags=["corpora"])

_UPLOAD_BODY = {
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                 "description": "One or more files, or .zip archives"}},
    }}},
    "required": True,
}


def _refuse_if_busy(name: str, workspace: str) -> None:
    with session_scope() as session:
        corpus = find_corpus(session, name, workspace)
        running = active_ingest(session, corpus.id) if corpus is not None else None
        if running is not None:
            raise ConflictError(f"corpus {name!r} is already being ingested by job {running.id} "
                                f"({running.state.value}); wait for it to finish, or cancel it",
                                job_id=running.id)


@router.post("/{name}/documents", status_code=status.HTTP_202_ACCEPTED,
             openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload(name: str, request: Request, caller: IngestCaller,
                 idempotency_key: IdempotencyKeyHeader = None) -> JobAccepted:
    """Upload one or more files, or ``.zip`` archives, as multipart form data (any field name;
    every part with a filename is a file) and index them as a job: 202 with its id.

    The body streams to disk under the data dir, never whole into memory. Over
    ``CORRAL_UPLOAD_MAX_BYTES`` is a 413, as are more files than ``CORRAL_ARCHIVE_MAX_FILES``; a
    body that is not well-formed multipart, holds no file or an unreadable zip is a 400. Entries of a
    zip that are unsafe (traversal, symlinks) or zip bombs are refused one by one, with the reason,
    in the job's report. One ingest per corpus at a time: 409 naming the running job
    (``error.job_id``), checked before the body is read and again when the job is recorded.

    With an ``Idempotency-Key``, the same files under the same key return the first job (the retried
    body is read, compared by digest and dropped); other files under that key are a 409.
    """
    validate_corpus_name(name)
    if idempotency_key is None:  # a retry must reach its original job even while that job runs
        await run_in_threadpool(_refuse_if_busy, name, caller.workspace)
    settings = get_settings()
    limits = UploadLimits(max_bytes=settings.upload_max_bytes, max_files=settings.archive_max_files)
    staged = await receive_upload(request, upload_root(), limits)
    try:
        done = await run_in_threadpool(
            lambda: once(caller.workspace_id, idempotency_key, fingerprint("upload", name, staged.digest),
                         "job", lambda: submit_ingest(name, staged.spec, workspace=caller.workspace,
                                                      remote=True)))
    except BaseException:
        staged.discard()
        raise
    if done.replayed:
        staged.discard()
    return JobAccepted(job_id=done.resource_id, state="queued", url=f"/v1/jobs/{done.resource_id}")
