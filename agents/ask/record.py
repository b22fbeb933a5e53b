"""What every ask shares, routed or agent: the checked question, the corpus it reads, the step trace,
and the Run and result it ends with — stored whether the run answered or failed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.citations import Citation
from corral.agents.executor import Usage
from corral.core.db import Corpus, Job, JobState, Run
from corral.core.errors import ConflictError, InvalidInputError, NotFoundError
from corral.core.services import get_corpus

__all__ = [
    "MAX_QUESTION_CHARS",
    "AskResult",
    "Trace",
    "check_question",
    "corpus_indexing",
    "open_corpus",
    "ordered",
    "refusals",
    "save_run",
]

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
    steps: list[dict[str, Any]] = field(default_factory=list)
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
    steps: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flags: list[str] = field(default_factory=list)

    def add(self, step: str, **data: Any) -> None:
        self.steps.append({"step": step, "t_ms": round(self.usage.seconds * 1000), **data})

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def check_question(question: str) -> str:
    """The question stripped; empty or over-long questions are an InvalidInputError."""
    question = question.strip()
    if not question:
        raise InvalidInputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInputError(
            f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
        )
    return question


def corpus_indexing(session: Session, corpus_id: int) -> bool:
    """Whether an ingest job for the corpus is queued or running."""
    active = session.scalar(
        select(Job.id).where(Job.corpus_id == corpus_id,
                             Job.state.in_([JobState.QUEUED, JobState.RUNNING])).limit(1)
    )
    return active is not None


def open_corpus(session: Session, name: str, trace: Trace) -> Corpus:
    """The corpus to read: a ConflictError when it has no documents yet; a note on the trace when it is
    still indexing (the run answers from the documents indexed so far)."""
    corpus = get_corpus(session, name)
    indexing = corpus_indexing(session, corpus.id)
    if corpus.document_count == 0:
        still = " (its ingest job is still running)" if indexing else ""
        raise ConflictError(
            f"corpus {name!r} has no indexed documents yet{still}: ingest some, or wait for its ingest "
            "job to finish"
        )
    if indexing:
        trace.add("note", text=f"the corpus is still indexing: answering from the "
                  f"{corpus.document_count} documents indexed so far")
    return corpus


def ordered(citations: list[Citation]) -> list[Citation]:
    """Cited first, then verified, then by retrieval score."""
    return sorted(citations, key=lambda c: (not c.cited_by_model, not c.verified, -(c.score or 0.0)))


def save_run(session_factory: sessionmaker[Session], run: Run, trace: Trace) -> float:
    """Store ``run`` with the trace's steps (unless set) and duration; returns the seconds taken."""
    seconds = round(trace.usage.seconds, 3)
    run.duration_ms = seconds * 1000
    if not run.steps:
        run.steps = trace.steps
    if run.actual_tokens is None:
        run.actual_tokens = trace.tokens
    with session_factory.begin() as session:
        session.add(run)
    return seconds


@contextmanager
def refusals(session_factory: sessionmaker[Session], corpus_name: str, question: str, trace: Trace, *,
             backend: str, model: str) -> Iterator[None]:
    """Record a Run for a question refused before reading (empty or too long, no documents yet, no
    room in the window), then let the error propagate. An unknown corpus has no Run to hold it."""
    try:
        yield
    except (InvalidInputError, ConflictError) as exc:
        corpus_id = _corpus_id(session_factory, corpus_name)
        if corpus_id is None:
            raise
        trace.add("refuse", error=str(exc))
        run = Run(corpus_id=corpus_id, question=question[:MAX_QUESTION_CHARS], strategy="refused",
                  strategy_reason=str(exc), decision={"refused": str(exc)}, backend=backend, model=model,
                  error=str(exc), actual_tokens=trace.tokens)
        save_run(session_factory, run, trace)
        raise


def _corpus_id(session_factory: sessionmaker[Session], name: str) -> int | None:
    with session_factory() as session:
        try:
            return get_corpus(session, name).id
        except NotFoundError:
            return None
