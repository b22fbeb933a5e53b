"""The agent queue's Celery task, registered on the one Celery app (``corral worker -Q agent``).

Passed a run id, never an object; the body calls :func:`execute_run`. ``acks_late`` with
``reject_on_worker_lost``: a worker lost mid-run gets its message redelivered, and the run — which
cannot resume half-generated — fails with the reason instead of staying ``running``
(:func:`corral.core.services.runs.claim_run`). Runs running far past any time budget (a message the
broker lost) are failed when an agent worker starts.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_ready

from corral.core.config import get_settings
from corral.core.db import session_scope
from corral.core.services.runs import fail_stale_runs
from corral.ingestion.worker import app
from corral.platform.runs import names
from corral.platform.runs.execute import execute_run, settle_run

__all__ = ["agent_run"]

log = logging.getLogger(__name__)


class _RunTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        from corral.core.db import RunState

        settle_run(args[0], RunState.FAILED, f"the run failed on its worker: {exc!r}", "error")


@app.task(name=names.AGENT_RUN, base=_RunTask, acks_late=True,  # type: ignore[untyped-decorator]
          reject_on_worker_lost=True, bind=True)
def agent_run(self: Task, run_id: str) -> str:
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    state = execute_run(run_id, redelivered=redelivered)
    return state.value if state else "skipped"


@worker_ready.connect  # type: ignore[untyped-decorator]
def _fail_stale_runs(**_: Any) -> None:
    budget = get_settings().agent_max_seconds
    try:
        with session_scope() as session:
            ids = fail_stale_runs(session, older_than_s=max(600.0, 4 * budget))
    except Exception as exc:  # never keep a worker from starting
        log.warning("could not check for stale runs: %r", exc)
        return
    for run_id in ids:
        log.warning("run %s stopped without a result: failed", run_id)
