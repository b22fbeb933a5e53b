from __future__ import annotations

from fastapi import APIRouter, status

from corral.core.services import list_corpora, validate_corpus_name
from corral.ingestion.ingest import submit_ingest
from corral.ingestion.sources import source_spec
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import (
    AskRequest,
    AskResponse,
    CorpusOut,
    IngestRequest,
    JobAccepted,
)
from corral.platform.composition import answer

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
    # No base folder: a relative path means nothing to a server.
    job_id = submit_ingest(name, source_spec(path=body.path, git=body.git, branch=body.branch))
    return JobAccepted(job_id=job_id, state="queued", url=f"/v1/jobs/{job_id}")


@router.post("/{name}/ask")
def ask(name: str, body: AskRequest) -> AskResponse:
    validate_corpus_name(name)
    return AskResponse.model_validate(answer(name, body.question, body.strategy, agent=body.agent).to_dict())
