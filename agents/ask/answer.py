"""``ask``: one question over one corpus, recorded as a Run with the decision and its reasons."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask.context import Passage, render, retrieved_passages, search, whole_corpus
from corral.agents.ask.model import ChatModel
from corral.agents.ask.router import Decision, Strategy, choose_strategy, context_budget
from corral.core.db import Run
from corral.core.errors import ConflictError, InvalidInputError, ModelError
from corral.core.index import VectorStore
from corral.core.services import get_corpus
from corral.core.types import Embedder
from corral.inference.errors import InferenceError

__all__ = ["AskResult", "Citation", "ask"]

MAX_QUESTION_CHARS = 8000
_SYSTEM = (
    "You answer questions about a collection of documents and code. Use only the numbered sources "
    "given. Answer briefly and cite the sources you use as [1], [2]. If the sources do not "
    "contain the answer, say so."
)
_PROMPT_OVERHEAD = 96  # chat template, instructions, "Question:" framing
_CITE = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True, slots=True)
class Citation:
    path: str
    start_line: int
    end_line: int
    score: float | None
    cited_by_model: bool

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["citations"] = [{**asdict(c), "label": c.label} for c in self.citations]
        return data


def ask(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    model: ChatModel,
    embedder: Embedder,
    store: VectorStore,
    max_new_tokens: int,
    top_k: int,
    strategy: Strategy | None = None,
) -> AskResult:
    """Answer ``question`` from the corpus; the Run is stored whether generation succeeds or not."""
    started = time.perf_counter()
    question = question.strip()
    if not question:
        raise InvalidInputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInputError(
            f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
        )
    with session_factory() as session:
        corpus = get_corpus(session, corpus_name)
        if corpus.document_count == 0:
            raise ConflictError(
                f"corpus {corpus_name!r} has no indexed documents yet: ingest some, or wait for "
                "its ingest job to finish"
            )
        q_tokens = model.count_tokens(question)
        budget = context_budget(model.context_window, q_tokens, max_new_tokens, _PROMPT_OVERHEAD)
        if budget < 64:
            raise InvalidInputError(
                f"the question takes {q_tokens} tokens, leaving no room for sources in the "
                f"{model.context_window}-token window of {model.name}"
            )
        ranked = search(session, store, embedder, corpus.id, question, top_k)
        decision = choose_strategy(
            corpus.token_count, corpus.document_count, budget, model.context_window,
            retrieve_estimate=sum(c.token_count + 12 for c, _ in ranked), forced=strategy,
        )
        steps: list[dict[str, Any]] = [
            {"step": "route", "strategy": decision.strategy.value, "reason": decision.reason,
             "budget": budget, "corpus_tokens": corpus.token_count},
            {"step": "search", "hits": len(ranked)},
        ]
        if decision.strategy is Strategy.STUFF:
            passages = whole_corpus(session, corpus.id)
            evidence = _evidence_from_ranked(passages, ranked)
        else:
            passages = retrieved_passages(ranked, budget)
            evidence = passages
        corpus_id = corpus.id

    messages = [
        {"role": "system", "content": _SYSTEM},
        # The question goes last, closest to where the answer starts: small models lose it otherwise.
        {"role": "user", "content": f"Sources:\n\n{render(passages)}\n\nQuestion: {question}"},
    ]
    run = Run(corpus_id=corpus_id, question=question, strategy=decision.strategy.value,
              strategy_reason=decision.reason, estimated_tokens=decision.estimated_tokens,
              model=model.name)
    try:
        gen = model.chat(messages, max_new_tokens)
    except InferenceError as exc:
        _record(session_factory, run, steps, error=str(exc), started=started)
        raise ModelError(str(exc)) from exc
    steps.append({"step": "generate", "prompt_tokens": gen.prompt_tokens,
                  "completion_tokens": gen.completion_tokens, "seconds": round(gen.seconds, 3),
                  "finish_reason": gen.finish_reason})
    citations = _citations(gen.text, passages, evidence, decision)
    run.answer = gen.text
    run.actual_tokens = gen.prompt_tokens + gen.completion_tokens
    run.citations = [{**asdict(c), "label": c.label} for c in citations]
    seconds = _record(session_factory, run, steps, started=started)
    return AskResult(
        run_id=run.id, corpus=corpus_name, question=question, answer=gen.text,
        strategy=decision.strategy.value, reason=decision.reason, model=model.name,
        estimated_tokens=decision.estimated_tokens, prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.completion_tokens, seconds=seconds, citations=citations,
    )


def _evidence_from_ranked(stuffed: list[Passage], ranked: list[Any]) -> list[Passage]:
    """When stuffing, point citations at the best-matching spans rather than at whole files."""
    numbers = {p.path: p.number for p in stuffed}
    return [
        Passage(numbers.get(c.document.path, 0), c.document.path, c.start_line, c.end_line,
                c.text, c.token_count, score)
        for c, score in ranked[:3]
    ]


def _citations(
    answer: str, passages: list[Passage], evidence: list[Passage], decision: Decision
) -> list[Citation]:
    cited_numbers = {int(n) for n in _CITE.findall(answer)}
    out: list[Citation] = []
    if decision.strategy is Strategy.STUFF:
        by_number = {p.number: p for p in passages}
        for n in sorted(cited_numbers):
            if n in by_number:
                p = by_number[n]
                out.append(Citation(p.path, p.start_line, p.end_line, None, True))
        out += [Citation(p.path, p.start_line, p.end_line, p.score, False) for p in evidence
                if p.number not in cited_numbers]
    else:
        out = [Citation(p.path, p.start_line, p.end_line, p.score, p.number in cited_numbers)
               for p in evidence]
        out.sort(key=lambda c: (not c.cited_by_model, -(c.score or 0.0)))
    return out


def _record(
    session_factory: sessionmaker[Session],
    run: Run,
    steps: list[dict[str, Any]],
    *,
    started: float,
    error: str | None = None,
) -> float:
    seconds = round(time.perf_counter() - started, 3)
    run.steps = steps
    run.error = error
    run.duration_ms = seconds * 1000
    with session_factory.begin() as session:
        session.add(run)
    return seconds
