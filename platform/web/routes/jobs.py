"""Adding sources to a corpus (uploaded files or zips, a git URL) and the jobs that index them: the
list, one job's live progress (Server-Sent Events of rendered fragments) and per-document items,
cancel, and retrying a job's failed documents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from corral.core.config import get_settings
from corral.core.db import Corpus, Job, JobState, Scope, session_scope
from corral.core.errors import InvalidInputError, PermissionDeniedError
from corral.core.services import (
    count_jobs,
    find_corpus,
    get_corpus,
    get_job,
    item_counts,
    list_items,
    list_jobs,
    validate_corpus_name,
)
from corral.core.services.jobs import ItemState
from corral.ingestion.ingest import submit_ingest, upload_root
from corral.ingestion.sources import source_spec
from corral.ingestion.sources.spec import UploadSpec, is_server_path, spec_from_params
from corral.platform.api.uploads import UploadLimits, receive_upload
from corral.platform.jobs import cancel_job
from corral.platform.web.pages import (
    Csrf,
    IngestViewer,
    PageRoute,
    ReadViewer,
    Viewer,
    redirect,
    render,
)
from corral.platform.web.templating import templates

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 50
POLL_S = 0.3  # how often a progress stream looks at its job
STATE_NAMES = [s.value for s in JobState]


def _corpus_name(db: Any, job: Job) -> str | None:
    corpus = db.get(Corpus, job.corpus_id) if job.corpus_id is not None else None
    named = job.params.get("corpus")
    return corpus.name if corpus is not None else (named if isinstance(named, str) else None)


@router.get("/corpora/{name}/sources")
def sources(request: Request, name: str, viewer: IngestViewer) -> Response:
    with session_scope() as db:
        found = get_corpus(db, name, viewer.principal.workspace)
        running = list_jobs(db, corpus_id=found.id, limit=1)
        settings = get_settings()
        return render(request, "sources.html", corpus=found, last=running[0] if running else None,
                      max_mb=settings.upload_max_bytes // (1024 * 1024))


@router.post("/corpora/{name}/upload", dependencies=[Csrf])
async def upload(request: Request, name: str, viewer: IngestViewer) -> Response:
    """Files or zips as multipart form data (the page sends them with ``X-CSRF-Token``): the same
    streaming, limits and job as ``POST /v1/corpora/{name}/documents``. Answers the job page's URL."""
    validate_corpus_name(name)
    settings = get_settings()
    limits = UploadLimits(max_bytes=settings.upload_max_bytes, max_files=settings.archive_max_files)
    staged = await receive_upload(request, upload_root(), limits)
    try:
        job_id = await run_in_threadpool(submit_ingest, name, staged.spec,
                                         workspace=viewer.principal.workspace, remote=True)
    except BaseException:
        staged.discard()
        raise
    return JSONResponse({"job_id": job_id, "url": f"/jobs/{job_id}"}, status_code=202)


@router.post("/corpora/{name}/git", dependencies=[Csrf])
def git(request: Request, name: str, viewer: IngestViewer,
        url: Annotated[str, Form(max_length=2048)] = "",
        branch: Annotated[str, Form(max_length=256)] = "") -> Response:
    """A git repository: public hosts only (or ``CORRAL_GIT_ALLOWED_HOSTS``); a repository on the
    server needs an admin key, as over the API."""
    spec = source_spec(git=url.strip(), branch=branch.strip() or None)
    if is_server_path(spec) and not viewer.principal.allows(Scope.ADMIN):
        raise PermissionDeniedError("a repository on the server needs an API key with the admin scope; "
                                    "give a URL of a public git host")
    job_id = submit_ingest(name, spec, workspace=viewer.principal.workspace, remote=True)
    return redirect(request, f"/jobs/{job_id}")


@router.get("/jobs")
def jobs(request: Request, viewer: ReadViewer,
         state: Annotated[str | None, Query(max_length=16)] = None,
         corpus: Annotated[str | None, Query(max_length=64)] = None,
         page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    if state and state not in STATE_NAMES:
        raise InvalidInputError(f"unknown job state {state[:20]!r}; use {', '.join(STATE_NAMES)}")
    wanted = JobState(state) if state else None
    ws = viewer.principal.workspace_id
    with session_scope() as db:
        corpus_id = None
        if corpus:
            found = find_corpus(db, corpus, viewer.principal.workspace)
            corpus_id = found.id if found is not None else -1  # an unknown name matches no job
        found_jobs = list_jobs(db, state=wanted, workspace_id=ws, corpus_id=corpus_id, limit=PAGE,
                               offset=(page - 1) * PAGE)
        total = count_jobs(db, state=wanted, workspace_id=ws, corpus_id=corpus_id)
        rows = [(j, _corpus_name(db, j)) for j in found_jobs]
        return render(request, "jobs.html", rows=rows, total=total, state=state or "",
                      corpus=corpus or "", page=page, pages=max(1, -(-total // PAGE)), states=STATE_NAMES)


def _job_view(db: Any, job: Job, viewer: Viewer) -> dict[str, Any]:
    counts = item_counts(db, job.id)
    source = job.params.get("kind")
    return {"job": job, "corpus": _corpus_name(db, job), "counts": counts,
            "can_ingest": viewer.principal.allows(Scope.INGEST),
            "failed_items": counts.get(ItemState.FAILED, 0),
            "retryable": job.state.finished and source != "upload" and counts.get(ItemState.FAILED, 0) > 0,
            "source": source, "uri": job.params.get("uri") if source != "upload" else
            (job.params.get("options") or {}).get("name")}


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str, viewer: ReadViewer,
        items: Annotated[str | None, Query(max_length=16, pattern="^[a-z]*$")] = None,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    with session_scope() as db:
        j = get_job(db, job_id, workspace_id=viewer.principal.workspace_id)
        found = list_items(db, j.id, state=items or None, limit=PAGE, offset=(page - 1) * PAGE)
        view = _job_view(db, j, viewer)
        shown = sum(view["counts"].values()) if not items else view["counts"].get(items, 0)
        return render(request, "job.html", **view, items=found, item_state=items or "", page=page,
                      pages=max(1, -(-shown // PAGE)))


def _panel(job_id: str, viewer: Viewer) -> tuple[str, bool]:
    with session_scope() as db:
        j = get_job(db, job_id, workspace_id=viewer.principal.workspace_id)
        html = templates().get_template("fragments/job_progress.html").render(
            **_job_view(db, j, viewer), csrf=viewer.csrf)
        return html, j.state.finished


async def _follow(job_id: str, viewer: Viewer, first: str, finished: bool) -> AsyncIterator[ServerSentEvent]:
    html, last = first, None
    while True:
        if html != last:
            yield ServerSentEvent(data=html, event="final" if finished else "progress")
            if finished:
                return
            last = html
        await asyncio.sleep(POLL_S)
        html, finished = await run_in_threadpool(_panel, job_id, viewer)


@router.get("/jobs/{job_id}/stream")
async def job_stream(job_id: str, viewer: ReadViewer) -> EventSourceResponse:
    """The job's progress panel, rendered, on every change (``progress``), then once more (``final``)."""
    first, finished = await run_in_threadpool(_panel, job_id, viewer)
    return EventSourceResponse(_follow(job_id, viewer, first, finished), ping=15)


@router.post("/jobs/{job_id}/cancel", dependencies=[Csrf])
def cancel(request: Request, job_id: str, viewer: IngestViewer) -> Response:
    cancel_job(job_id, workspace_id=viewer.principal.workspace_id)
    return redirect(request, f"/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry", dependencies=[Csrf])
def retry(request: Request, job_id: str, viewer: IngestViewer) -> Response:
    """Index the job's source again: unchanged documents are kept as they are, the failed ones are
    tried again. An upload's files are removed when its job ends, so they are uploaded again instead."""
    with session_scope() as db:
        j = get_job(db, job_id, workspace_id=viewer.principal.workspace_id)
        if not j.state.finished:
            raise InvalidInputError("the job is still running: retry its failed documents once it ends")
        corpus = _corpus_name(db, j)
        spec = spec_from_params(j.params)
    if isinstance(spec, UploadSpec):
        raise InvalidInputError("an upload's files are removed once its job ends: upload the failed "
                                "files again")
    if corpus is None:
        raise InvalidInputError("the job names no corpus")
    if is_server_path(spec) and not viewer.principal.allows(Scope.ADMIN):
        raise PermissionDeniedError("re-reading a path on the server needs an API key with the admin scope")
    new_id = submit_ingest(corpus, spec, workspace=viewer.principal.workspace, remote=True)
    return redirect(request, f"/jobs/{new_id}")
