"""A run's events as a Server-Sent Events stream: what the REST API and the dashboard follow a run with.

Events are read from the database (the source of truth, whichever process runs the run), from just
after ``after``, until the final event or until the run is found finished with nothing left to send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from corral.core.db import Run, session_scope
from corral.core.services.runs import FINAL, events_after

__all__ = ["POLL_S", "follow_run"]

POLL_S = 0.1  # how often a stream looks for new events


def _next(run_id: str, after: int) -> tuple[list[tuple[int, str, dict[str, Any]]], bool]:
    """Events after ``after`` and whether the run had finished when they were read (one snapshot)."""
    with session_scope() as session:
        events = [(e.seq, e.kind, dict(e.data)) for e in events_after(session, run_id, after)]
        state = session.scalar(select(Run.state).where(Run.id == run_id))
    return events, state is None or state.finished


async def follow_run(run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """The run's events after ``after``, each with its sequence number as the SSE id (so a client
    resumes with ``Last-Event-ID``), ending after the final event."""
    last = after
    while True:
        events, finished = await run_in_threadpool(_next, run_id, last)
        for seq, kind, data in events:
            yield ServerSentEvent(data=json.dumps(data), event=kind, id=str(seq))
            last = seq
            if kind == FINAL:
                return
        if not events:
            if finished:  # its final event is at or before ``after``: nothing more will come
                return
            await asyncio.sleep(POLL_S)
