"""``/v1/jobs``: background jobs with per-document progress, live (Server-Sent Events), and
cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from corral.core.db import Corpus, Job, JobState, session_scope
from corral.core.services import count_jobs, get_job, item_counts, list_items, list_jobs
from corral.platform.api.auth import IngestCaller, ReadCaller
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import EVENT_STREAM, JobDetailOut, JobItemOut, JobOut, Page
from corral.platform.jobs import cancel_job

router = APIRouter(prefix="/jobs", tags=["jobs"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
ItemStateQ = Annotated[str | None, Query(max_length=16, pattern="^[a-z]+$")]


def _out(j: Job, corpus: str | None) -> JobOut:
    return JobOut(
        id=j.id, kind=j.kind.value, state=j.state.value, corpus=corpus,
        progress=round(j.progress, 4), done=j.done, total=j.total, error=j.error,
        result=j.result, created_at=j.created_at, started_at=j.started_at,
        finished_at=j.finished_at, heartbeat_at=j.heartbeat_at, phase=j.phase, failed=j.failed,
        skipped=j.skipped, attempts=j.attempts, cancel_requested=j.cancel_requested,
        watchdog=list(j.params.get("watchdog") or []),
    )


def _corpus_name(session: SessionDep, j: Job) -> str | None:
    corpus = session.get(Corpus, j.corpus_id) if j.corpus_id is not None else None
    if corpus is None:  # a failed job's new, empty corpus is removed; the job still names it
        named = j.params.get("corpus")
        return named if isinstance(named, str) else None
    return corpus.name


@router.get("")
def jobs(caller: ReadCaller, session: SessionDep, state: JobState | None = None, limit: Limit = 50,
         offset: Offset = 0) -> Page[JobOut]:
    found = list_jobs(session, state=state, limit=limit, offset=offset, workspace_id=caller.workspace_id)
    return Page(items=[_out(j, _corpus_name(session, j)) for j in found],
                total=count_jobs(session, state=state, workspace_id=caller.workspace_id),
                limit=limit, offset=offset)


@router.get("/{job_id}")
def job(job_id: str, caller: ReadCaller, session: SessionDep, items_state: ItemStateQ = None,
        items_limit: Limit = 100, items_offset: Offset = 0) -> JobDetailOut:
    j = get_job(session, job_id, workspace_id=caller.workspace_id)
    items = [JobItemOut(path=i.path, state=i.state, attempts=i.attempts, error=i.error)
             for i in list_items(session, j.id, state=items_state, limit=items_limit,
                                 offset=items_offset)]
    return JobDetailOut(**_out(j, _corpus_name(session, j)).model_dump(),
                        items_by_state=item_counts(session, j.id), items=items)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
def cancel(job_id: str, caller: IngestCaller) -> JobOut:
    j = cancel_job(job_id, workspace_id=caller.workspace_id)
    return _out(j, None)


@router.delete("/{job_id}", status_code=status.HTTP_202_ACCEPTED)
def delete(job_id: str, caller: IngestCaller) -> JobOut:
    """Same as ``POST /v1/jobs/{id}/cancel``: jobs are kept as a record, so delete means stop."""
    return cancel(job_id, caller)


JOB_POLL_S = 0.25  # how often a job's stream looks at the job


def _snapshot(job_id: str, workspace_id: int) -> dict[str, Any]:
    with session_scope() as session:
        j = get_job(session, job_id, workspace_id=workspace_id)
        data: dict[str, Any] = {
            "state": j.state.value, "phase": j.phase, "done": j.done, "total": j.total,
            "failed": j.failed, "skipped": j.skipped, "progress": round(j.progress, 4),
            "items_by_state": item_counts(session, j.id),
        }
        if j.state.finished:
            data.update(result=j.result, error=j.error)
        return data


async def _follow_job(job_id: str, workspace_id: int, first: dict[str, Any]
                      ) -> AsyncIterator[ServerSentEvent]:
    seq, data, last = 0, first, None
    while True:
        if data != last:
            seq += 1
            finished = JobState(data["state"]).finished
            yield ServerSentEvent(data=json.dumps(data), event="final" if finished else "progress",
                                  id=str(seq))
            if finished:
                return
            last = data
        await asyncio.sleep(JOB_POLL_S)
        data = await run_in_threadpool(_snapshot, job_id, workspace_id)


@router.get("/{job_id}/events", responses=EVENT_STREAM, response_class=EventSourceResponse)
async def job_events(job_id: str, caller: ReadCaller, session: SessionDep) -> EventSourceResponse:
    """The job's progress as Server-Sent Events: a ``progress`` event (state, phase, done, total,
    failed, skipped, per-document item counts) whenever it changes, then one ``final`` with the
    result. A client that disconnects does not affect the job."""
    await run_in_threadpool(session.commit)  # hold no pooled connection while the stream lasts
    first = await run_in_threadpool(_snapshot, job_id, caller.workspace_id)
    return EventSourceResponse(_follow_job(job_id, caller.workspace_id, first), ping=15)
