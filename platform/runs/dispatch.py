"""Submitting runs and handing them to whoever runs them in this mode; waiting for one; cancelling.

Embedded mode runs them on a pool of ``CORRAL_RUN_THREADS`` threads of this process, sharing the one
cached model (the engine batches the decode steps of concurrent runs). Server mode sends the run id by
task name to the ``CORRAL_AGENT_QUEUE`` Celery queue, where ``corral worker -Q agent`` runs it: the
API process never loads a model.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import select

from corral.agents.ask import Strategy
from corral.core.config import Mode, get_settings
from corral.core.db import Run, RunEvent, RunState, session_scope
from corral.core.errors import InvalidInputError, ServiceUnavailableError
from corral.core.services import get_corpus, validate_corpus_name
from corral.core.services.runs import FINAL, create_run, fail_interrupted_runs, finish_run, request_run_cancel
from corral.platform.runs import names
from corral.platform.runs.execute import execute_run

__all__ = [
    "RunOutcome", "cancel_run", "fail_interrupted_embedded_runs", "hand_off_run", "submit_run",
    "wait_for_run",
]

log = logging.getLogger(__name__)


def submit_run(corpus: str, question: str, strategy: Strategy | None = None, *, agent: bool = False,
               workspace: str, key_id: int | None = None) -> str:
    """Record a queued run of ``question`` over ``corpus`` (of ``workspace``) and hand it off; returns
    its id. An unknown corpus is a NotFoundError now, not a failed run later. ``key_id``: the API key
    asking, charged the run's tokens when it ends."""
    validate_corpus_name(corpus)
    if agent and strategy is not None:
        raise InvalidInputError("choose either a strategy or the agent, not both")
    params: dict[str, Any] = {"strategy": strategy.value if strategy else None, "agent": agent,
                              "key_id": key_id}
    with session_scope() as session:
        run = create_run(session, get_corpus(session, corpus, workspace), question, params)
        run_id = run.id
    try:
        hand_off_run(run_id)
    except ServiceUnavailableError as exc:
        with session_scope() as session:
            row = session.get(Run, run_id)
            if row is not None and not row.state.finished:
                finish_run(session, row, RunState.FAILED, error=str(exc), error_type="service_unavailable")
        raise
    return run_id


@lru_cache(maxsize=1)
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=get_settings().run_threads, thread_name_prefix="corral-run")


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Celery:
    return Celery("corral-producer", broker=broker_url, set_as_current=False)


def hand_off_run(run_id: str) -> None:
    """Queue ``run_id`` on the agent queue (server mode) or start it on this process's run threads.
    Raises :class:`ServiceUnavailableError` when the broker cannot be reached."""
    settings = get_settings()
    if settings.mode is Mode.SERVER:
        try:
            _producer(settings.redis_url or "").send_task(names.AGENT_RUN, args=[run_id],
                                                          queue=settings.agent_queue)
        except KombuOperationalError as exc:
            raise ServiceUnavailableError(f"the run broker is unreachable: {exc}") from exc
    else:
        _threads().submit(execute_run, run_id).add_done_callback(_log_failure)


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("in-process run failed: %r", exc)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished run as its final event tells it."""

    state: RunState
    result: dict[str, Any] | None  # the whole answer, when it answered
    error: str | None
    error_type: str | None


def _final(run_id: str) -> RunOutcome | None:
    with session_scope() as session:
        state = session.scalar(select(Run.state).where(Run.id == run_id))
        if state is None or not state.finished:
            return None
        event = session.scalar(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == FINAL)
                               .order_by(RunEvent.seq.desc()).limit(1))
        data = dict(event.data) if event is not None else {}
    return RunOutcome(state, data.get("result"), data.get("error"), data.get("error_type"))


def wait_for_run(run_id: str, timeout_s: float, poll_s: float = 0.05) -> RunOutcome | None:
    """The run's outcome once it is finished, or None after ``timeout_s`` (it goes on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = _final(run_id)
        if outcome is not None or time.monotonic() >= deadline:
            return outcome
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        poll_s = min(poll_s * 1.5, 0.5)


def cancel_run(run_id: str, workspace_id: int) -> Run:
    """Ask ``run_id`` (of ``workspace_id``) to stop; see :func:`request_run_cancel`."""
    with session_scope() as session:
        return request_run_cancel(session, run_id, workspace_id)


def fail_interrupted_embedded_runs() -> list[str]:
    """At start-up of an embedded server (the one process that runs its runs): fail the runs a
    previous one left queued or running."""
    if get_settings().mode is not Mode.EMBEDDED:
        return []
    with session_scope() as session:
        ids = fail_interrupted_runs(session)
    for run_id in ids:
        log.warning("run %s was interrupted by a restart: failed", run_id)
    return ids
