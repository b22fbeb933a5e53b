from __future__ import annotations

from fastapi import APIRouter

from corral.core.db import Corpus
from corral.core.services import get_job
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}")
def job(job_id: str, session: SessionDep) -> JobOut:
    j = get_job(session, job_id)
    corpus = session.get(Corpus, j.corpus_id) if j.corpus_id is not None else None
    return JobOut(
        id=j.id, kind=j.kind.value, state=j.state.value, corpus=corpus.name if corpus else None,
        progress=round(j.progress, 4), done=j.done, total=j.total, error=j.error,
        result=j.result, created_at=j.created_at, started_at=j.started_at,
        finished_at=j.finished_at, heartbeat_at=j.heartbeat_at,
    )
