"""Running one submitted run to its end, wherever it runs (a thread of the embedded server, an agent
worker): claim it, answer through the one ask path with the run's id, and make sure it ends finished
whatever happens — an error before the ask path stored anything still fails the run with the reason."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import OperationalError as SqlOperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError

from corral.agents.ask import RunCancelled, Strategy
from corral.core.db import Corpus, Run, RunState, Workspace, session_scope
from corral.core.errors import (
    ConfigurationError,
    ConflictError,
    CorralError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    ServiceUnavailableError,
)
from corral.core.services.liveness import beating
from corral.core.services.runs import beat_run, claim_run, finish_run
from corral.ingestion.pipeline import heartbeat_seconds
from corral.platform.composition import answer

__all__ = ["ERROR_TYPES", "error_for", "execute_run", "settle_run"]

log = logging.getLogger(__name__)

# How a run's failure is recorded (its final event's ``error_type``) and raised again by a door.
ERROR_TYPES: dict[str, type[CorralError]] = {
    "invalid_input": InvalidInputError,
    "conflict": ConflictError,
    "not_found": NotFoundError,
    "model_error": ModelError,
    "configuration_error": ConfigurationError,
    "service_unavailable": ServiceUnavailableError,
    "cancelled": RunCancelled,
}


def _error_type(exc: BaseException) -> str:
    for kind, cls in ERROR_TYPES.items():
        if isinstance(exc, cls):
            return kind
    return "error"


def error_for(error_type: str | None, message: str) -> CorralError:
    """The error a failed run's final event describes, to raise at a door."""
    return ERROR_TYPES.get(error_type or "", CorralError)(message)


def execute_run(run_id: str, *, redelivered: bool = False) -> RunState | None:
    """Run ``run_id`` if it is still to be run (see :func:`corral.core.services.runs.claim_run`);
    returns the state it ended in, or None when there was nothing to run."""
    with session_scope() as session:
        run = claim_run(session, run_id, redelivered=redelivered)
        if run is None:
            return None
        corpus = session.get(Corpus, run.corpus_id)
        workspace = session.get(Workspace, corpus.workspace_id) if corpus is not None else None
        if corpus is None or workspace is None:  # cannot happen: the run would have been deleted too
            return None
        question, params = run.question, dict(run.params)
        corpus_name, workspace_name = corpus.name, workspace.name
    strategy = Strategy(params["strategy"]) if params.get("strategy") else None
    try:
        # The run beats while it is answered: a worker killed mid-run is found by the runs' watchdog
        # within CORRAL_JOB_STALE_SECONDS, instead of staying "running" until the broker redelivers.
        with beating(lambda: _beat(run_id), heartbeat_seconds(), f"run-{run_id[:8]}"):
            result = answer(corpus_name, question, strategy, agent=bool(params.get("agent")),
                            workspace=workspace_name, run_id=run_id)
        _charge(params.get("key_id"), result.prompt_tokens + result.completion_tokens)
    except RunCancelled as exc:
        return settle_run(run_id, RunState.CANCELLED, str(exc), "cancelled")
    except CorralError as exc:
        return settle_run(run_id, RunState.FAILED, str(exc), _error_type(exc))
    except Exception as exc:
        log.exception("run %s failed", run_id)
        return settle_run(run_id, RunState.FAILED, f"the run failed: {exc!r}", "error")
    return settle_run(run_id, RunState.SUCCEEDED, None, None)


def _beat(run_id: str) -> None:
    with session_scope() as session:
        beat_run(session, run_id)


def _charge(key_id: int | None, tokens: int) -> None:
    """Count the run's tokens against its API key's per-minute token limit."""
    from corral.platform.api.ratelimit import charge_tokens

    try:
        charge_tokens(key_id, tokens)
    except CorralError as exc:  # the answer is stored: a limiter that cannot count must not fail it
        log.warning("could not count the tokens of a run: %s", exc)


def settle_run(run_id: str, state: RunState, error: str | None, error_type: str | None,
               attempts: int = 4) -> RunState:
    """Finish the run unless the ask path already did (it stores every run it got to record). A
    database that is briefly unreachable (or a pool briefly exhausted) is tried again, so that a run
    does not stay ``running`` for want of one write."""
    for attempt in range(attempts):
        try:
            with session_scope() as session:
                run = session.get(Run, run_id, with_for_update=True)
                if run is None:
                    return state
                if not run.state.finished:
                    finish_run(session, run, state if error else RunState.FAILED, error=error or
                               "the run ended without a result", error_type=error_type or "error")
                return run.state
        except (ServiceUnavailableError, SqlOperationalError, SqlTimeoutError) as exc:
            if attempt + 1 == attempts:
                raise
            log.warning("could not finish run %s (%s); trying again", run_id, exc)
            time.sleep(2**attempt)
    return state
