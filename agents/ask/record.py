"""What a run records, routed or agent: its steps as they happen, and the Run and result it ends with —
stored whether the run answered, failed or was refused before reading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from corral.agents.citations import Citation
from corral.agents.executor import Step, Usage
from corral.core.db import Run
from corral.core.errors import ConflictError, InvalidInputError, NotFoundError
from corral.core.services import DEFAULT_WORKSPACE, get_corpus

__all__ = ["MAX_QUESTION_CHARS", "AskResult", "Trace", "refusals", "save_run"]

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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["citations"] = [c.to_dict() for c in self.citations]
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

    def add(self, kind: str, **details: Any) -> None:
        self.steps.append(Step(kind, details, round(self.usage.seconds * 1000)))

    def records(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def spend(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def save_run(session_factory: sessionmaker[Session], run: Run, trace: Trace) -> float:
    """Store ``run`` with the trace's steps and duration; returns the seconds taken."""
    seconds = round(trace.usage.seconds, 3)
    run.duration_ms = seconds * 1000
    run.steps = trace.records()
    if run.actual_tokens is None:
        run.actual_tokens = trace.tokens
    with session_factory.begin() as session:
        session.add(run)
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
        run = Run(corpus_id=corpus_id, question=question[:MAX_QUESTION_CHARS], strategy="refused",
                  strategy_reason=str(exc), decision={"refused": str(exc)}, backend=backend, model=model,
                  error=str(exc), actual_tokens=trace.tokens)
        save_run(session_factory, run, trace)
        raise


def _corpus_id(session_factory: sessionmaker[Session], name: str, workspace: str) -> int | None:
    with session_factory() as session:
        try:
            return get_corpus(session, name, workspace).id
        except NotFoundError:
            return None
