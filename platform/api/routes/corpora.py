"""``/v1/corpora``: the caller's workspace's corpora, ingesting into them, and asking them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from corral.core.config import get_settings
from corral.core.db import Scope
from corral.core.errors import PermissionDeniedError
from corral.core.services import list_corpora, validate_corpus_name
from corral.core.services.idempotency import fingerprint, once
from corral.core.services.usage import check_budget
from corral.ingestion.ingest import submit_ingest
from corral.ingestion.sources import source_spec
from corral.ingestion.sources.spec import is_server_path
from corral.platform.api.auth import AskCaller, IngestCaller, ReadCaller
from corral.platform.api.deps import IdempotencyKeyHeader, SessionDep
from corral.platform.api.ratelimit import check_tokens
from corral.platform.api.schemas import (
    AskRequest,
    AskResponse,
    CorpusOut,
    IngestRequest,
    JobAccepted,
    Page,
    RunAccepted,
)
from corral.platform.runs import error_for, submit_run, wait_for_run

router = APIRouter(prefix="/corpora", tags=["corpora"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("")
def corpora(caller: ReadCaller, session: SessionDep, limit: Limit = 100,
            offset: Offset = 0) -> Page[CorpusOut]:
    found = list_corpora(session, caller.workspace)
    return Page(
        items=[CorpusOut(name=c.name, documents=c.document_count, tokens=c.token_count,
                         created_at=c.created_at) for c in found[offset:offset + limit]],
        total=len(found), limit=limit, offset=offset,
    )


@router.post("/{name}/ingest", status_code=status.HTTP_202_ACCEPTED)
def ingest(name: str, body: IngestRequest, caller: IngestCaller,
           idempotency_key: IdempotencyKeyHeader = None) -> JobAccepted:
    """Index a git repository (or, for admin keys, a path under the allowed roots) as a job.

    A path on the server, or a local git repository, needs a key with the admin scope and lies
    under ``CORRAL_INGEST_ALLOWED_ROOTS`` — in every environment, development included, and for
    the open local user too (other callers upload files: ``POST /v1/corpora/{name}/documents``).
    Git URLs need the ingest scope; their host must be public (or in ``CORRAL_GIT_ALLOWED_HOSTS``).

    One ingest per corpus at a time: while one is queued or running, this answers 409 with that
    job's id (``error.job_id``). We refuse rather than queue: a second ingest of the same corpus
    would redo the first's work or race it for the same documents, and the caller, told which
    job is in the way, can wait for it (or cancel it) and decide whether to ingest again.
    """
    # No base folder: a relative path means nothing to a server.
    spec = source_spec(path=body.path, git=body.git, branch=body.branch)
    if is_server_path(spec) and not caller.allows(Scope.ADMIN):
        raise PermissionDeniedError(
            "reading a path on the server needs an API key with the admin scope; upload the files "
            "(POST /v1/corpora/{name}/documents) or give a git URL")
    done = once(caller.workspace_id, idempotency_key,
                fingerprint("ingest", name, body.model_dump_json()), "job",
                lambda: submit_ingest(name, spec, workspace=caller.workspace, remote=True))
    return JobAccepted(job_id=done.resource_id, state="queued", url=f"/v1/jobs/{done.resource_id}")


@router.post("/{name}/ask", responses={202: {"model": RunAccepted,
                                              "description": "Still running after the timeout"}})
def ask(name: str, body: AskRequest, caller: AskCaller, session: SessionDep) -> AskResponse:
    """Answer now, for short questions. The question runs as a run, exactly as ``POST
    /v1/corpora/{name}/runs`` (in server mode on an agent worker: this process loads no model), and
    this waits for it up to ``CORRAL_ASK_TIMEOUT_S``. Finished in time: 200 with the answer, or the
    error status of why it failed. Still running then: **202** with the run's ``url`` and
    ``events_url`` — it goes on, and its answer is read there (rather than a 504 that loses it)."""
    validate_corpus_name(name)
    check_tokens(caller)  # the key's tokens a minute, then the workspace's month: 429 when spent
    check_budget(session, caller.workspace_id)
    session.commit()  # hold no transaction (nor SQLite's write lock) across the model's answer
    run_id = submit_run(name, body.question, body.strategy, agent=body.agent, workspace=caller.workspace,
                        key_id=caller.key_id)
    outcome = wait_for_run(run_id, get_settings().ask_timeout_s)
    if outcome is None:
        return JSONResponse(RunAccepted.of(run_id, "running").model_dump(),  # type: ignore[return-value]
                            status_code=status.HTTP_202_ACCEPTED)
    if outcome.result is None:
        raise error_for(outcome.error_type, outcome.error or f"the run ended {outcome.state.value}")
    return AskResponse.model_validate(outcome.result)
