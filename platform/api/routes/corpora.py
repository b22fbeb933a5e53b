from __future__ import annotations

from fastapi import APIRouter, status

from corral.core.db import SourceKind
from corral.core.services import list_corpora, validate_corpus_name
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import (
    AskRequest,
    AskResponse,
    CorpusOut,
    IngestRequest,
    JobAccepted,
)
from corral.platform.composition import answer
from corral.platform.jobs import check_ingest_path, submit_ingest

router = APIRouter(prefix="/corpora", tags=["corpora"])


@router.get("")
def corpora(session: SessionDep) -> list[CorpusOut]:
    return [
        CorpusOut(name=c.name, documents=c.document_count, tokens=c.token_count,
                  created_at=c.created_at)
        for c in list_corpora(session)
    ]


@router.post("/{name}/ingest", status_code=status.HTTP_202_ACCEPTED)
def ingest(name: str, body: IngestRequest) -> JobAccepted:
    validate_corpus_name(name)
    if body.git is not None:
        options = {"branch": body.branch} if body.branch else {}
        job_id = submit_ingest(name, body.git, kind=SourceKind.GIT, options=options)
    else:
        path = check_ingest_path(body.path or "")
        if path.is_file() and path.suffix.lower() == ".zip":
            job_id = submit_ingest(name, path, kind=SourceKind.UPLOAD, options={"name": path.name})
        else:
            job_id = submit_ingest(name, path)
    return JobAccepted(job_id=job_id, state="queued", url=f"/v1/jobs/{job_id}")


@router.post("/{name}/ask")
def ask(name: str, body: AskRequest) -> AskResponse:
    validate_corpus_name(name)
    return AskResponse.model_validate(answer(name, body.question, body.strategy, agent=body.agent).to_dict())
