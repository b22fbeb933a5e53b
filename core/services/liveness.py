"""Liveness of background work: a thread that beats while a block runs; the watchdog's record.

:func:`beating` calls ``beat`` every few seconds while a block of work runs.

Jobs and runs show they are alive with a heartbeat column; the watchdog takes work whose heartbeat
stopped for lost. The beat runs on its own clock, so a long step (a big PDF, a slow model call)
does not look dead; if the process dies, so does the thread, and the heartbeat stops — the point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

__all__ = ["WATCHDOG_HISTORY", "beating", "record_watchdog"]

log = logging.getLogger(__name__)


@contextmanager
def beating(beat: Callable[[], object], every: float, name: str) -> Iterator[None]:
    """Call ``beat`` every ``every`` seconds until the block ends. A beat that raises is logged and
    the next one tried: a missed beat is not fatal, the work itself reports its errors."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            try:
                beat()
            except Exception as exc:
                log.warning("%s: heartbeat failed: %r", name, exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


WATCHDOG_HISTORY = 20  # decisions kept on a job or run


def record_watchdog(params: dict[str, Any], action: str, reason: str, now: datetime) -> dict[str, Any]:
    """``params`` with the watchdog's decision appended to its ``watchdog`` list (the last
    :data:`WATCHDOG_HISTORY`): what it did to a job or run, when, and why — for the operator."""
    history = list(params.get("watchdog") or [])[-(WATCHDOG_HISTORY - 1):]
    return {**params, "watchdog": [*history, {"at": now.isoformat(), "action": action,
                                              "reason": reason}]}
