"""A run's progress as it happens: its events, written where every door reads them, and its cancel flag.

A synchronous ask reports nowhere (:class:`Progress`). A run created beforehand (a background run, or
a synchronous ask over the API) reports through :class:`RunEvents` into the run's event rows:

* ``decision``: the router's decision (strategy, reasons, estimates) once it is made;
* ``step``: each step as the trace records it (tool calls, reads, model calls with tokens and seconds),
  written once the step is complete — when the next one starts, the answer streams or the run ends;
* ``token``: answer text as the model generates it, in slices (``{"text", "call"}``; ``call`` is
  ``answer``, ``map`` or ``reduce``). A run that escalates streams each attempt; the ``final`` event's
  answer is the one that counts;
* ``final``: written when the run is stored (see :func:`corral.core.services.runs.finish_run`).

Cancelling is cooperative: the cancel flag is read every ``check_tokens`` tokens or ``check_s`` seconds
of generation and at every step; when set, :class:`RunCancelled` is raised from the token callback,
which stops the decoding at once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.executor import Step
from corral.core.errors import CorralError
from corral.core.services.runs import append_event, cancel_requested

__all__ = ["Progress", "RunCancelled", "RunEvents", "TokenCallback", "progress_of"]


class RunCancelled(CorralError):
    """The run was cancelled at its caller's request while it was running."""


class Progress:
    """Where a run reports as it goes; this one reports nowhere (a synchronous ask)."""

    run_id: str | None = None
    # True while the answer awaits the output guard: its text is not reported (the final event says
    # what may be shown), though tokens still count towards the cancel checks.
    withhold_text: bool = False

    def step(self, step: Step) -> None:
        """A step was recorded (its details may still be completed until the next one)."""

    def decision(self, record: dict[str, Any]) -> None:
        """The router decided (or the request forced) how the run reads."""

    def token(self, text: str, call: str) -> None:
        """The model generated ``text`` in the call ``call`` (``answer``, ``map``, ``reduce``)."""

    def flush(self) -> None:
        """Write out what is held back (the last step, buffered text)."""

    def callbacks(self, call: str) -> list[BaseCallbackHandler]:
        """LangChain callbacks that report the tokens of one model call."""
        return []


class TokenCallback(BaseCallbackHandler):
    """Forwards a streamed model call's tokens; raises (``raise_error``) to stop the decoding."""

    raise_error = True

    def __init__(self, progress: Progress, call: str) -> None:
        self._progress = progress
        self._call = call
        self._last: GenerationChunk | ChatGenerationChunk | None = None

    def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None, run_id: UUID,
        parent_run_id: UUID | None = None, tags: list[str] | None = None, **kwargs: Any,
    ) -> None:
        # Some integrations report a chunk themselves and LangChain reports it again: count it once.
        if chunk is not None and chunk is self._last:
            return
        self._last = chunk
        if isinstance(token, str) and token:
            self._progress.token(token, self._call)


class RunEvents(Progress):
    """Progress written as the run's events (one writer: the thread running the run)."""

    def __init__(self, session_factory: sessionmaker[Session], run_id: str, *, check_tokens: int = 16,
                 check_s: float = 0.5) -> None:
        self.run_id = run_id
        self._sf = session_factory
        self._check_tokens = check_tokens
        self._check_s = check_s
        self._lock = threading.Lock()
        self._pending: Step | None = None
        self._text: list[str] = []
        self._call = "answer"
        self._tokens = 0  # since the last flush
        self._flushed = time.monotonic()
        self._started_text = False

    def decision(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._write([("decision", record)])

    def step(self, step: Step) -> None:
        with self._lock:
            events = self._held()
            self._pending = step
            cancelled = self._write(events, check=True)
        if cancelled:
            raise RunCancelled("the run was cancelled")

    def token(self, text: str, call: str) -> None:
        with self._lock:
            events = self._held() if call != self._call and self._text else []
            self._call = call
            if not self.withhold_text:
                self._text.append(text)
            self._tokens += 1
            first = not self._started_text
            due = (first or self._tokens >= self._check_tokens
                   or time.monotonic() - self._flushed >= self._check_s)
            if not due:
                return
            self._started_text = True
            cancelled = self._write(events + self._held(), check=True)
        if cancelled:
            raise RunCancelled("the run was cancelled while it was generating")

    def flush(self) -> None:
        with self._lock:
            self._write(self._held())

    def callbacks(self, call: str) -> list[BaseCallbackHandler]:
        return [TokenCallback(self, call)]

    # -- internals (under the lock) ----------------------------------------------------------------
    def _held(self) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        if self._pending is not None:
            events.append(("step", self._pending.to_dict()))
            self._pending = None
        if self._text:
            events.append(("token", {"text": "".join(self._text), "call": self._call}))
            self._text = []
        self._tokens = 0
        self._flushed = time.monotonic()
        return events

    def _write(self, events: list[tuple[str, dict[str, Any]]], *, check: bool = False) -> bool:
        """Append ``events``; with ``check``, also read the cancel flag (True: cancel requested)."""
        if not events and not check:
            return False
        with self._sf.begin() as session:
            for kind, data in events:
                append_event(session, self.run_id or "", kind, _jsonable(data))
            return cancel_requested(session, self.run_id or "") if check else False


def progress_of(session_factory: sessionmaker[Session], run_id: str | None) -> Progress:
    """The run's events when it was created beforehand (``run_id``), else nowhere."""
    return Progress() if run_id is None else RunEvents(session_factory, run_id)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(data, default=str)))
