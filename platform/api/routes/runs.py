"""``/v1/runs``: asks as background runs — submit, follow live (Server-Sent Events), read, cancel, rate.

A run's events are its stored rows, so the stream replays from any point (``Last-Event-ID`` or
``?after=``) in any API process and then follows new ones until the ``final`` event. A client that
disconnects only stops its own stream: the run goes on and stays readable.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from sqlalchemy import select
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from corral.agents.ask.cite import answer_support
from corral.core.db import Corpus, Run, RunState, session_scope
from corral.core.services.idempotency import fingerprint, once
from corral.core.services.runs import add_feedback, get_run, list_runs
from corral.core.services.usage import check_budget
from corral.platform.api.auth import AskCaller, ReadCaller
from corral.platform.api.deps import IdempotencyKeyHeader, SessionDep
from corral.platform.api.ratelimit import check_tokens
from corral.platform.api.schemas import (
    EVENT_STREAM,
    AskRequest,
    FeedbackOut,
    FeedbackRequest,
    Page,
    RunAccepted,
    RunOut,
    RunSummary,
)
from corral.platform.runs import cancel_run, submit_run
from corral.platform.runs.stream import follow_run

router = APIRouter(tags=["runs"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _summary(r: Run, corpus: str) -> dict[str, Any]:
    return dict(
        id=r.id, corpus=corpus, question=r.question, state=r.state.value, strategy=r.strategy or None,
        forced_strategy=r.forced_strategy, model=r.model or None,
        answer=None if r.blocked else r.answer, blocked=r.blocked, error=r.error,
        prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
        estimated_tokens=r.estimated_tokens, cancel_requested=r.cancel_requested,
        created_at=r.created_at, started_at=r.started_at, finished_at=r.finished_at,
        seconds=round(r.duration_ms / 1000, 3) if r.duration_ms is not None else None,
    )


def _corpus(session: SessionDep, r: Run) -> str:
    return session.scalar(select(Corpus.name).where(Corpus.id == r.corpus_id)) or ""


@router.post("/corpora/{name}/runs", status_code=status.HTTP_202_ACCEPTED)
def submit(name: str, body: AskRequest, caller: AskCaller, session: SessionDep,
           idempotency_key: IdempotencyKeyHeader = None) -> RunAccepted:
    """Ask ``body.question`` as a background run: follow ``events_url``, read ``url``. The key's
    token limit and the workspace's monthly budget are checked first (429 when spent). A retry with
    the same ``Idempotency-Key`` and body gets the first attempt's run, not a second one."""
    check_tokens(caller)
    check_budget(session, caller.workspace_id)
    session.commit()
    done = once(caller.workspace_id, idempotency_key, fingerprint("run", name, body.model_dump_json()),
                "run", lambda: submit_run(name, body.question, body.strategy, agent=body.agent,
                                          workspace=caller.workspace, key_id=caller.key_id))
    state = "queued"
    if done.replayed:
        state = get_run(session, done.resource_id, workspace_id=caller.workspace_id).state.value
    return RunAccepted.of(done.resource_id, state)


@router.get("/runs")
def runs(caller: ReadCaller, session: SessionDep,
         corpus: Annotated[str | None, Query(max_length=64)] = None, state: RunState | None = None,
         limit: Limit = 50, offset: Offset = 0) -> Page[RunSummary]:
    page = list_runs(session, caller.workspace_id, corpus=corpus, state=state, limit=limit, offset=offset)
    return Page(items=[RunSummary(**_summary(r, name)) for r, name in page.runs], total=page.total,
                limit=limit, offset=offset)


@router.get("/runs/{run_id}")
def run(run_id: str, caller: ReadCaller, session: SessionDep) -> RunOut:
    r = get_run(session, run_id, workspace_id=caller.workspace_id)
    return RunOut(**_summary(r, _corpus(session, r)), reason=r.strategy_reason or None,
                  decision=r.decision, steps=r.steps, citations=r.citations, params=r.params,
                  safety=r.safety or [],
                  support=answer_support(r.answer, r.citations) if r.answer is not None else None)


@router.delete("/runs/{run_id}", status_code=status.HTTP_202_ACCEPTED)
def cancel(run_id: str, caller: AskCaller, session: SessionDep) -> RunSummary:
    """Stop the run: a queued one at once, a running one at its next token or step."""
    r = cancel_run(run_id, caller.workspace_id)
    return RunSummary(**_summary(r, _corpus(session, r)))


@router.post("/runs/{run_id}/feedback", status_code=status.HTTP_201_CREATED)
def feedback(run_id: str, body: FeedbackRequest, caller: AskCaller, session: SessionDep) -> FeedbackOut:
    r = get_run(session, run_id, workspace_id=caller.workspace_id)
    f = add_feedback(session, r, body.rating, body.comment)
    session.commit()  # stored before the answer says so
    return FeedbackOut(id=f.id, run_id=r.id, rating=f.rating, comment=f.comment, created_at=f.created_at)


def _check(run_id: str, workspace_id: int) -> None:
    with session_scope() as session:
        get_run(session, run_id, workspace_id=workspace_id)


def _start(after: int | None, last_event_id: str | None) -> int:
    resumed = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else 0
    return max(after or 0, resumed)


@router.get("/runs/{run_id}/events", responses=EVENT_STREAM, response_class=EventSourceResponse)
async def run_events(
    run_id: str, caller: ReadCaller, session: SessionDep,
    after: Annotated[int | None, Query(ge=0, description="Replay the events after this seq")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """The run's events as Server-Sent Events (``event``: state, decision, step, token, final; ``id``:
    the seq to resume from), replayed and then followed until ``final``."""
    # The request's session would be held for as long as the stream lasts: end it now, so that many
    # followers do not hold as many pooled connections (each poll opens its own, briefly).
    await run_in_threadpool(session.commit)
    await run_in_threadpool(_check, run_id, caller.workspace_id)
    return EventSourceResponse(follow_run(run_id, _start(after, last_event_id)), ping=15)
