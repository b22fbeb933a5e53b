"""What a run records, routed or agent: its steps as they happen, and the Run and result it ends with —
stored whether the run answered, failed or was refused before reading."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask.progress import Progress
from corral.agents.citations import Citation
from corral.agents.executor import Step, Usage
from corral.core.db import Run, RunState
from corral.core.errors import ConflictError, InvalidInputError, NotFoundError
from corral.core.services import DEFAULT_WORKSPACE, get_corpus
from corral.core.services.runs import finish_run

__all__ = ["MAX_QUESTION_CHARS", "AskResult", "Trace", "new_run", "refusals", "save_run"]

MAX_QUESTION_CHARS = 8000


@dataclass(slots=True)
class AskResult:
    run_id: str
    corpus: str
    question: str
    answer: str
    strategy: str
    reason: str
    model: str
    estimated_tokens: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    citations: list[Citation] = field(default_factory=list)
    forced: bool = False
    routed_strategy: str = ""  # the router's first choice; differs from strategy after escalation
    decision: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # as stored on the Run
    flags: list[str] = field(default_factory=list)  # unverified citations, screened injections
    # What the answer rests on (agents/ask/cite.py answer_support): supported, partly-supported,
    # unsupported or not-found.
    support: str = "unsupported"
    # Safety decisions on the way (see Trace.decide), and why the output guard blocked the answer.
    safety: list[dict[str, Any]] = field(default_factory=list)
    blocked: str | None = None

    def __post_init__(self) -> None:
        # A blocked answer leaves the run through no door: only Run.answer keeps it, for admins.
        if self.blocked:
            self.answer = ""

    def to_dict(self) -> dict[str, Any]:
        """The result as the ``final`` event and the API carry it (a blocked answer is null)."""
        data = asdict(self)
        data["citations"] = [c.to_dict() for c in self.citations]
        if self.blocked:
            data["answer"] = None
        return data


@dataclass(slots=True)
class Trace:
    """What the run did so far; becomes ``Run.steps`` and the result's token totals. The executor
    appends its steps to the same list, under the same ``usage``."""

    usage: Usage
    steps: list[Step] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flags: list[str] = field(default_factory=list)
    safety: list[dict[str, Any]] = field(default_factory=list)  # becomes Run.safety
    progress: Progress = field(default_factory=Progress)  # told of every step as it is recorded

    def __post_init__(self) -> None:
        self.steps = _Reported(self.steps, self.progress)

    def add(self, kind: str, **details: Any) -> None:
        self.steps.append(Step(kind, details, round(self.usage.seconds * 1000)))

    def decide(self, kind: str, source: str, detail: str) -> None:
        """Record a safety decision: ``kind`` is redacted, screened or blocked; ``source`` what it
        concerned (a passage label, a tool, the answer); ``detail`` why. Each (kind, source) once."""
        if not any(d["kind"] == kind and d["source"] == source for d in self.safety):
            self.safety.append({"kind": kind, "source": source, "detail": detail})

    def note_redactions(self) -> None:
        """A ``redacted`` decision for each tool read whose text held credentials redacted at ingest
        (the executor counts their markers on its tool steps)."""
        for step in self.steps:
            n = step.details.get("redacted") if step.kind == "tool" else None
            if n:
                self.decide("redacted", _read_source(step.details),
                            f"{n} credential(s) redacted at ingest")

    def records(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def spend(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _read_source(details: dict[str, Any]) -> str:
    """What a tool step read, as a decision names it: ``path:start-end``, a path, or the tool."""
    given = details.get("args")
    args: dict[str, Any] = given if isinstance(given, dict) else {}
    path = str(args.get("path") or "")[:300]
    if path and "start_line" in args:
        return f"{path}:{args.get('start_line')}-{args.get('end_line')}"
    return path or f"{details.get('name', 'tool')} {json.dumps(args, sort_keys=True, default=str)[:200]}"


class _Reported(list[Step]):
    """A step list that tells the run's progress of each step appended (the executor appends too)."""

    def __init__(self, steps: Iterable[Step], progress: Progress) -> None:
        super().__init__(steps)
        self._progress = progress

    def append(self, step: Step) -> None:
        super().append(step)
        self._progress.step(step)


def new_run(trace: Trace, **fields: Any) -> Run:
    """The Run a question ends as: the pre-created one this run fills (its id), or a new one."""
    run_id = trace.progress.run_id
    return Run(**fields) if run_id is None else Run(id=run_id, **fields)


def save_run(session_factory: sessionmaker[Session], run: Run, trace: Trace, *,
             state: RunState | None = None, error_type: str | None = None,
             result: Callable[[float], AskResult] | None = None) -> float:
    """Store ``run`` with the trace's steps, tokens and duration, finished in ``state`` (default:
    failed when it has an error, else succeeded), and end its events. A run with the id of a
    pre-created one fills that row. ``result`` builds the answer's record from the seconds taken (the
    ``final`` event carries it). Returns the seconds taken."""
    seconds = round(trace.usage.seconds, 3)
    run.duration_ms = seconds * 1000
    trace.note_redactions()
    run.steps = trace.records()
    run.safety = list(trace.safety)
    run.prompt_tokens, run.completion_tokens = trace.prompt_tokens, trace.completion_tokens
    if run.actual_tokens is None:
        run.actual_tokens = trace.tokens
    if run.id is None:  # a run recorded when it ends (a synchronous ask)
        run.started_at = datetime.now(UTC) - timedelta(seconds=seconds)
    trace.progress.flush()
    with session_factory.begin() as session:
        row = session.get(Run, run.id, with_for_update=True) if run.id is not None else None
        if row is None:
            session.add(run)
            session.flush()
            row = run
        else:  # the pre-created run: fill it with what this one set
            given = inspect(run).dict
            for attr in inspect(Run).column_attrs:
                if attr.key in given and attr.key not in ("id", "created_at", "params"):
                    setattr(row, attr.key, given[attr.key])
        final = result(seconds).to_dict() if result is not None else None
        finish_run(session, row, state or (RunState.FAILED if row.error else RunState.SUCCEEDED),
                   error_type=error_type, result=final)
        run.state = row.state
    return seconds


@contextmanager
def refusals(session_factory: sessionmaker[Session], corpus_name: str, question: str, trace: Trace, *,
             backend: str, model: str, workspace: str = DEFAULT_WORKSPACE) -> Iterator[None]:
    """Record a Run for a question refused before reading (empty or too long, no documents yet, no
    room in the window), then let the error propagate. An unknown corpus has no Run to hold it."""
    try:
        yield
    except (InvalidInputError, ConflictError) as exc:
        corpus_id = _corpus_id(session_factory, corpus_name, workspace)
        if corpus_id is None:
            raise
        trace.add("refuse", error=str(exc))
        run = new_run(trace, corpus_id=corpus_id, question=question[:MAX_QUESTION_CHARS],
                      strategy="refused", strategy_reason=str(exc), decision={"refused": str(exc)},
                      backend=backend, model=model, error=str(exc), actual_tokens=trace.tokens)
        save_run(session_factory, run, trace,
                 error_type="conflict" if isinstance(exc, ConflictError) else "invalid_input")
        raise


def _corpus_id(session_factory: sessionmaker[Session], name: str, workspace: str) -> int | None:
    with session_factory() as session:
        try:
            return get_corpus(session, name, workspace).id
        except NotFoundError:
            return None
