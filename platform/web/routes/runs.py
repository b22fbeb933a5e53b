"""Asking a corpus (the answer streams in over the run's events), the runs history with feedback and
filters, one run with its strategy card, steps and citations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy import ColumnElement, exists, func, select
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from corral.agents.ask import Strategy
from corral.core.db import Corpus, Feedback, Run, RunState, session_scope
from corral.core.errors import InvalidInputError
from corral.core.services import get_corpus
from corral.core.services.runs import add_feedback, get_run
from corral.core.services.usage import check_budget
from corral.platform.api.ratelimit import check_tokens
from corral.platform.runs import cancel_run, submit_run
from corral.platform.runs.stream import follow_run
from corral.platform.web.images import cited_images
from corral.platform.web.pages import AskViewer, Csrf, PageRoute, ReadViewer, is_htmx, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 30
STRATEGIES = [s.value for s in Strategy]
MAX_QUESTION = 4000


def _strategy(value: str | None) -> Strategy | None:
    if not value:
        return None
    try:
        return Strategy(value)
    except ValueError:
        raise InvalidInputError(f"unknown strategy {value[:30]!r}; use {', '.join(STRATEGIES)} or let "
                                "the router choose") from None


def _feedback(db: Any, run_ids: list[str]) -> dict[str, Feedback]:
    """The latest feedback of each run."""
    if not run_ids:
        return {}
    rows = db.scalars(select(Feedback).where(Feedback.run_id.in_(run_ids))
                      .order_by(Feedback.created_at, Feedback.id))
    return {f.run_id: f for f in rows}


@router.get("/corpora/{name}/ask")
def ask_page(request: Request, name: str, viewer: AskViewer) -> Response:
    with session_scope() as db:
        found = get_corpus(db, name, viewer.principal.workspace)
        recent = list(db.scalars(select(Run).where(Run.corpus_id == found.id)
                                 .order_by(Run.created_at.desc(), Run.id).limit(8)))
        return render(request, "ask.html", corpus=found, recent=recent, strategies=STRATEGIES)


@router.post("/corpora/{name}/ask", dependencies=[Csrf])
def ask(request: Request, name: str, viewer: AskViewer,
        question: Annotated[str, Form(max_length=MAX_QUESTION)] = "",
        strategy: Annotated[str, Form(max_length=32)] = "") -> Response:
    """A run of ``question`` (the router decides, or ``strategy`` is forced), as ``POST
    /v1/corpora/{name}/runs`` makes it: the key's token limit and the workspace's budget first."""
    forced = _strategy(strategy)
    if not question.strip():
        raise InvalidInputError("type a question first")
    check_tokens(viewer.principal)
    with session_scope() as db:
        check_budget(db, viewer.principal.workspace_id)
    run_id = submit_run(name, question, forced, workspace=viewer.principal.workspace,
                        key_id=viewer.principal.key_id)
    if is_htmx(request):
        return render(request, "fragments/run_live.html", run_id=run_id, question=question.strip(),
                      forced=forced.value if forced else None)
    return redirect(request, f"/runs/{run_id}")


def _filters(workspace_id: int, corpus: str | None, state: str | None, strategy: str | None,
             feedback: str | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Corpus.workspace_id == workspace_id]
    if corpus:
        where.append(Corpus.name == corpus)
    if state:
        try:
            where.append(Run.state == RunState(state))
        except ValueError:
            raise InvalidInputError(f"unknown run state {state[:20]!r}") from None
    if strategy:
        where.append(Run.strategy == strategy)
    rated = {"up": 1, "down": -1, "neutral": 0}
    if feedback in rated:
        where.append(exists().where(Feedback.run_id == Run.id, Feedback.rating == rated[feedback]))
    elif feedback == "none":
        where.append(~exists().where(Feedback.run_id == Run.id))
    elif feedback:
        raise InvalidInputError("feedback is up, down, neutral or none")
    return where


@router.get("/runs")
def runs(request: Request, viewer: ReadViewer,
         corpus: Annotated[str | None, Query(max_length=64)] = None,
         state: Annotated[str | None, Query(max_length=16)] = None,
         strategy: Annotated[str | None, Query(max_length=32)] = None,
         feedback: Annotated[str | None, Query(max_length=16)] = None,
         page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    where = _filters(viewer.principal.workspace_id, corpus, state, strategy, feedback)
    with session_scope() as db:
        rows = db.execute(select(Run, Corpus.name).join(Corpus, Corpus.id == Run.corpus_id).where(*where)
                          .order_by(Run.created_at.desc(), Run.id).limit(PAGE)
                          .offset((page - 1) * PAGE)).all()
        total = int(db.scalar(select(func.count(Run.id)).join(Corpus, Corpus.id == Run.corpus_id)
                              .where(*where)) or 0)
        rated = _feedback(db, [r.id for r, _ in rows])
        return render(request, "runs.html", rows=rows, rated=rated, total=total, page=page,
                      pages=max(1, -(-total // PAGE)), corpus=corpus or "", state=state or "",
                      strategy=strategy or "", feedback=feedback or "", strategies=STRATEGIES)


def _run_context(db: Any, run: Run) -> dict[str, Any]:
    corpus = db.get(Corpus, run.corpus_id)
    decision = run.decision or {}
    estimates = decision.get("estimates") or {}
    images = cited_images(db, corpus.id, corpus.name, run.citations or []) if corpus else {}
    return {"run": run, "corpus": corpus.name if corpus else "", "decision": decision,
            "estimates": estimates, "stuff": estimates.get("stuff"),
            "feedback": _feedback(db, [run.id]).get(run.id), "images": images}


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, viewer: ReadViewer) -> Response:
    with session_scope() as db:
        r = get_run(db, run_id, workspace_id=viewer.principal.workspace_id)
        return render(request, "run.html", **_run_context(db, r))


@router.get("/runs/{run_id}/card")
def run_card(request: Request, run_id: str, viewer: ReadViewer) -> Response:
    """The finished run as a fragment: what the live view is replaced by once its stream ends."""
    with session_scope() as db:
        r = get_run(db, run_id, workspace_id=viewer.principal.workspace_id)
        return render(request, "fragments/run_card.html", **_run_context(db, r))


def _check(run_id: str, workspace_id: int) -> None:
    with session_scope() as db:
        get_run(db, run_id, workspace_id=workspace_id)


@router.get("/runs/{run_id}/events")
async def run_events(request: Request, run_id: str, viewer: ReadViewer) -> EventSourceResponse:
    """The run's events (decision, step, token, final), as ``GET /v1/runs/{id}/events`` sends them,
    for the page's own stream (a browser's EventSource sends the session cookie, not an API key)."""
    await run_in_threadpool(_check, run_id, viewer.principal.workspace_id)
    resumed = request.headers.get("last-event-id", "")
    after = int(resumed) if resumed.isdigit() and len(resumed) < 10 else 0
    return EventSourceResponse(follow_run(run_id, after), ping=15)


@router.post("/runs/{run_id}/feedback", dependencies=[Csrf])
def feedback(request: Request, run_id: str, viewer: AskViewer,
             rating: Annotated[int, Form(ge=-1, le=1)] = 0,
             comment: Annotated[str, Form(max_length=2000)] = "") -> Response:
    with session_scope() as db:
        r = get_run(db, run_id, workspace_id=viewer.principal.workspace_id)
        add_feedback(db, r, rating, comment.strip() or None)
        db.flush()
        if is_htmx(request):
            return render(request, "fragments/feedback.html", run=r, feedback=_feedback(db, [r.id])[r.id],
                          saved=True)
    return redirect(request, f"/runs/{run_id}")


@router.post("/runs/{run_id}/cancel", dependencies=[Csrf])
def cancel(request: Request, run_id: str, viewer: AskViewer) -> Response:
    cancel_run(run_id, viewer.principal.workspace_id)
    return redirect(request, f"/runs/{run_id}")
