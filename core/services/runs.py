"""Run records: questions answered in the background, and the events they report as they go.

A background run moves ``queued → running → succeeded | failed | cancelled``. Whoever runs it (the
embedded server's run thread, or an agent worker) claims it, appends its events — the router's
decision, each step, slices of answer text, one ``final`` — and finishes it; every door (the SSE
stream, the synchronous ask, the dashboard) reads the same rows. A run is scoped by its corpus's
workspace: another workspace's run is not found, with the same message as a missing one.

A run a dead process left ``queued`` or ``running`` does not stay stuck: an embedded server fails
them at start-up (:func:`fail_interrupted_runs`), an agent worker that gets a run redelivered after
its previous worker was lost fails it with the reason (:func:`claim_run`), and
:func:`fail_stale_runs` fails runs running far past any budget. While a worker runs a run it beats
(:func:`beat_run`); :func:`reap_stale_runs` — the runs' watchdog — fails a running run whose heartbeat
stopped (a run cannot resume half-generated) and sends a queued one whose message may have been lost
again; each decision is recorded on the run (``params["watchdog"]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Feedback, Run, RunEvent, RunState
from corral.core.errors import ConflictError, InvalidInputError, NotFoundError
from corral.core.services.liveness import record_watchdog
from corral.core.services.webhooks import enqueue_event

__all__ = [
    "FINAL",
    "RunPage",
    "StaleRuns",
    "add_feedback",
    "append_event",
    "beat_run",
    "cancel_requested",
    "claim_run",
    "create_run",
    "events_after",
    "fail_interrupted_runs",
    "fail_stale_runs",
    "finish_run",
    "get_run",
    "list_runs",
    "reap_stale_runs",
    "request_run_cancel",
]

log = logging.getLogger(__name__)

FINAL = "final"  # the kind of a run's last event
MAX_PAGE = 1000
MAX_EVENTS = 1000

def _now() -> datetime:
    return datetime.now(UTC)


def create_run(session: Session, corpus: Corpus, question: str, params: dict[str, Any]) -> Run:
    """A queued run of ``question`` over ``corpus`` (already looked up in the caller's workspace);
    ``params`` says how to answer (``strategy``, ``agent``), so a worker can run it from the row."""
    question = question.strip()
    if not question:
        raise InvalidInputError("the question is empty")
    run = Run(corpus_id=corpus.id, question=question, state=RunState.QUEUED, params=dict(params),
              strategy="", strategy_reason="", model="", forced_strategy=params.get("strategy"),
              cancel_requested=False, decision={}, steps=[], citations=[], prompt_tokens=0,
              completion_tokens=0, estimated_tokens=0, actual_tokens=0)
    session.add(run)
    session.flush()
    return run


def _missing(run_id: str) -> NotFoundError:
    return NotFoundError(f"no run with id {run_id[:40]!r}")


def get_run(session: Session, run_id: str, *, workspace_id: int | None = None,
            for_update: bool = False) -> Run:
    """The run ``run_id``; with ``workspace_id``, a run of another workspace is not found."""
    if len(run_id) > 32:
        raise _missing(run_id)
    query = select(Run).where(Run.id == run_id)
    if workspace_id is not None:
        query = query.join(Corpus, Corpus.id == Run.corpus_id).where(Corpus.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update(of=Run)
    run = session.scalar(query)
    if run is None:
        raise _missing(run_id)
    return run


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[tuple[Run, str]]  # each run with its corpus's name
    total: int


def _in(workspace_id: int, corpus: str | None, state: RunState | None) -> list[ColumnElement[bool]]:
    conditions = [Corpus.workspace_id == workspace_id]
    if corpus is not None:
        conditions.append(Corpus.name == corpus)
    if state is not None:
        conditions.append(Run.state == state)
    return conditions


def list_runs(session: Session, workspace_id: int, *, corpus: str | None = None,
              state: RunState | None = None, limit: int = 50, offset: int = 0) -> RunPage:
    """A workspace's runs, newest first, with the total the filters match."""
    where = _in(workspace_id, corpus, state)
    rows = session.execute(
        select(Run, Corpus.name).join(Corpus, Corpus.id == Run.corpus_id).where(*where)
        .order_by(Run.created_at.desc(), Run.id)
        .limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset))
    ).all()
    total = session.scalar(select(func.count(Run.id)).join(Corpus, Corpus.id == Run.corpus_id).where(*where))
    return RunPage([(r, name) for r, name in rows], int(total or 0))


def append_event(session: Session, run_id: str, kind: str, data: dict[str, Any]) -> int:
    """Add the run's next event (one writer per run: whoever runs it); returns its ``seq`` (from 1)."""
    last = session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id))
    seq = int(last or 0) + 1
    session.add(RunEvent(run_id=run_id, seq=seq, kind=kind, data=data))
    session.flush()
    return seq


def events_after(session: Session, run_id: str, after: int = 0, limit: int = MAX_EVENTS
                 ) -> list[RunEvent]:
    """The run's events with ``seq > after``, in order (the caller has checked the workspace)."""
    return list(session.scalars(
        select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > after)
        .order_by(RunEvent.seq).limit(max(1, min(limit, MAX_EVENTS)))
    ))


def cancel_requested(session: Session, run_id: str) -> bool:
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def claim_run(session: Session, run_id: str, *, redelivered: bool = False) -> Run | None:
    """Start ``run_id``: ``queued`` → ``running``. None when there is nothing to run: it is finished,
    or cancelled before it started (finished here), or — ``redelivered`` by the broker after the
    worker running it was lost — interrupted (failed here with the reason)."""
    run = session.scalar(select(Run).where(Run.id == run_id).with_for_update())
    if run is None or run.state.finished:
        return None
    if run.cancel_requested:
        finish_run(session, run, RunState.CANCELLED, error="cancelled before it started",
                   error_type="cancelled")
        return None
    if run.state is RunState.RUNNING:
        if not redelivered:
            return None  # someone else is running it
        finish_run(session, run, RunState.FAILED, error_type="interrupted",
                   error="interrupted: the agent worker running it stopped; ask again")
        return None
    run.state = RunState.RUNNING
    run.started_at = run.heartbeat_at = _now()
    append_event(session, run.id, "state", {"state": RunState.RUNNING.value})
    return run


def finish_run(session: Session, run: Run, state: RunState, *, error: str | None = None,
               error_type: str | None = None, result: dict[str, Any] | None = None) -> None:
    """End ``run`` in ``state``: its ``final`` event (with ``result``, the whole answer, when it
    answered) and the workspace's ``run.finished`` webhook, in the caller's transaction."""
    run.state = state
    run.cancel_requested = run.cancel_requested or state is RunState.CANCELLED
    if error is not None:
        run.error = error
    now = _now()
    run.finished_at = now
    run.started_at = run.started_at or now
    final: dict[str, Any] = {"state": state.value, "run_id": run.id}
    if run.error:
        final["error"] = run.error
        final["error_type"] = error_type or "error"
    if result is not None:
        final["result"] = result
    append_event(session, run.id, FINAL, final)
    corpus = session.get(Corpus, run.corpus_id)
    if corpus is not None:
        enqueue_event(session, corpus.workspace_id, "run.finished", {"run": {
            "id": run.id, "state": state.value, "corpus": corpus.name, "question": run.question[:1000],
            "strategy": run.strategy or None,
            "answer": run.answer[:4000] if run.answer and not run.blocked else None, "blocked": run.blocked,
            "error": run.error[:1000] if run.error else None, "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens, "finished_at": now.isoformat(),
            "url": f"/v1/runs/{run.id}",
        }})


def request_run_cancel(session: Session, run_id: str, workspace_id: int | None = None) -> Run:
    """Ask the run to stop: a queued run is cancelled at once, a running one stops at its next token
    or step. Cancelling a finished run is a ConflictError, except a cancelled one (no change)."""
    run = get_run(session, run_id, workspace_id=workspace_id, for_update=True)
    if run.state is RunState.CANCELLED:
        return run
    if run.state.finished:
        raise ConflictError(f"run {run.id} already {run.state.value}; there is nothing to cancel")
    run.cancel_requested = True
    if run.state is RunState.QUEUED:
        finish_run(session, run, RunState.CANCELLED, error="cancelled before it started",
                   error_type="cancelled")
    return run


def add_feedback(session: Session, run: Run, rating: int, comment: str | None) -> Feedback:
    if rating not in (-1, 0, 1):
        raise InvalidInputError("rating must be -1, 0 or 1")
    feedback = Feedback(run_id=run.id, rating=rating, comment=comment or None)
    session.add(feedback)
    session.flush()
    return feedback


def _fail_all(session: Session, runs: list[Run], error: str, error_type: str) -> list[str]:
    for run in runs:
        if run.cancel_requested:
            finish_run(session, run, RunState.CANCELLED, error="cancelled (" + error + ")",
                       error_type="cancelled")
        else:
            finish_run(session, run, RunState.FAILED, error=error, error_type=error_type)
    return [r.id for r in runs]


def fail_interrupted_runs(session: Session) -> list[str]:
    """At start-up of the one process that runs them (an embedded server): every run left queued or
    running was interrupted by the restart; fail them, so no one waits on them."""
    runs = list(session.scalars(
        select(Run).where(Run.state.in_([RunState.QUEUED, RunState.RUNNING])).with_for_update()
    ))
    return _fail_all(session, runs, "interrupted by a restart; ask again", "interrupted")


def fail_stale_runs(session: Session, *, older_than_s: float, now: datetime | None = None) -> list[str]:
    """Fail runs still running ``older_than_s`` seconds after they started (far past any run's time
    budget: their worker died and the broker did not redeliver them)."""
    cutoff = (now or _now()) - timedelta(seconds=older_than_s)
    runs = [r for r in session.scalars(
        select(Run).where(Run.state == RunState.RUNNING, Run.started_at < cutoff)
        .with_for_update(skip_locked=True)
    ) if r.started_at is not None and (r.started_at.replace(tzinfo=r.started_at.tzinfo or UTC) < cutoff)]
    return _fail_all(session, runs, f"no result {older_than_s:.0f}s after it started: its worker "
                     "stopped; ask again", "interrupted")



def beat_run(session: Session, run_id: str) -> bool:
    """Refresh a running run's heartbeat; ``False`` when it is not running (nothing to keep alive)."""
    beat = session.execute(
        update(Run).where(Run.id == run_id, Run.state == RunState.RUNNING).values(heartbeat_at=_now()))
    return bool(getattr(beat, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class StaleRuns:
    resend: list[str]  # queued runs to send to an agent worker again
    failed: list[str]  # running runs whose worker stopped, now failed


def reap_stale_runs(session: Session, *, stale_after: float, now: datetime | None = None) -> StaleRuns:
    """The runs' watchdog, its decisions recorded on each run:

    - a ``running`` run whose heartbeat (or start) is older than ``stale_after`` seconds lost its
      worker: it fails with the reason (``error_type`` ``interrupted``), or is cancelled if that was
      asked;
    - a ``queued`` run older than ``2 * stale_after`` whose last send is as old may have lost its
      message with the broker: it is sent again (claiming is idempotent: a second message for a run
      already claimed does nothing) and its heartbeat set, so it is re-sent once per period.

    Rows are claimed with ``SKIP LOCKED``: several watchdogs at once each act on a run once. The
    caller sends ``resend`` after this session commits.
    """
    now = now or _now()
    cutoff = now - timedelta(seconds=stale_after)
    queued_cutoff = now - timedelta(seconds=2 * stale_after)
    rows = session.scalars(select(Run).where(
        ((Run.state == RunState.RUNNING) & (func.coalesce(Run.heartbeat_at, Run.started_at) < cutoff))
        | ((Run.state == RunState.QUEUED)
           & (func.coalesce(Run.heartbeat_at, Run.created_at) < queued_cutoff))
    ).with_for_update(skip_locked=True)).all()
    resend: list[str] = []
    failed: list[str] = []
    for run in rows:
        if run.state is RunState.RUNNING:
            last = _aware(run.heartbeat_at or run.started_at or run.created_at)
            if last >= cutoff:  # SQLite compares naive strings; re-check with real datetimes
                continue
            reason = (f"interrupted: no heartbeat from its agent worker for {stale_after:.0f}s "
                      "(the worker stopped); ask again")
            run.params = record_watchdog(run.params, "failed", reason, now)
            _fail_all(session, [run], reason, "interrupted")
            failed.append(run.id)
        else:
            if _aware(run.heartbeat_at or run.created_at) >= queued_cutoff:
                continue
            run.heartbeat_at = now
            run.params = record_watchdog(run.params, "resent", "still queued: its message may have "
                                         "been lost with the broker", now)
            resend.append(run.id)
    return StaleRuns(resend=resend, failed=failed)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
