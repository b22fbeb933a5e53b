"""``ask_agent``: the model plans its own reading with the corpus tools, run by the plan executor.

The answer goes through the same citation checks as ``ask``: citations name ``path:lines``; each is
checked against the corpus, and quotations against the text the tools returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask.answer import AskResult, check_question, corpus_indexing
from corral.agents.ask.planning import line_counts
from corral.agents.citations import verify_answer
from corral.agents.executor import Budget, PlanExecutor
from corral.agents.retrieval import HybridSearcher, Passage
from corral.agents.tools import CorpusReader, build_tools
from corral.core.db import Run
from corral.core.errors import ConflictError, InvalidInputError, ModelError
from corral.core.services import get_corpus
from corral.inference.errors import InferenceError

__all__ = ["ask_agent"]

AGENT = "agent"


def ask_agent(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    chat: BaseChatModel,
    searcher: HybridSearcher,
    budget: Budget,
    backend: str = "embedded",
    top_k: int = 8,
) -> AskResult:
    """Answer ``question`` by letting ``chat`` call the read-only corpus tools, within ``budget``."""
    started = time.perf_counter()
    question = check_question(question)
    with session_factory() as session:
        corpus = get_corpus(session, corpus_name)
        if corpus.document_count == 0:
            still = " (its ingest job is still running)" if corpus_indexing(session, corpus.id) else ""
            raise ConflictError(f"corpus {corpus_name!r} has no indexed documents yet{still}")
        corpus_id = corpus.id
        counts = line_counts(session, corpus_id)

    def search(query: str, k: int) -> Sequence[tuple[str, int, int, str]]:
        with session_factory() as s:
            return [(r.chunk.document.path, r.chunk.start_line, r.chunk.end_line, r.chunk.text)
                    for r in searcher.search(s, corpus_id, query, min(k, top_k))]

    reader = CorpusReader(session_factory, corpus_id)
    tools = build_tools(reader, search)
    try:
        bound = chat.bind_tools(tools)
    except NotImplementedError as exc:
        raise InvalidInputError("this chat backend cannot call tools; ask without --agent") from exc
    reason = "forced by the request: the model plans its reading with the corpus tools"
    run = Run(corpus_id=corpus_id, question=question, strategy=AGENT, strategy_reason=reason,
              forced_strategy=AGENT, backend=backend, model=str(getattr(chat, "model_name", backend)),
              decision={"strategy": AGENT, "reasons": [reason], "tools": [t.name for t in tools],
                        "budget": {"steps": budget.max_steps, "tokens": budget.max_tokens,
                                   "seconds": budget.max_seconds}})
    try:
        result = PlanExecutor(bound, tools, budget).run(question)
    except InferenceError as exc:
        run.error = str(exc)
        run.duration_ms = round(time.perf_counter() - started, 3) * 1000
        with session_factory.begin() as s:
            s.add(run)
        raise ModelError(str(exc)) from exc
    read = [Passage(n, sp["path"], sp["start_line"], sp["end_line"], "", 0)
            for n, sp in enumerate(result.spans, start=1)]
    # Quotes are checked against everything the tools returned, as one source.
    sources = [*read, Passage(0, "(tool output)", 0, 0, "\n".join(result.tool_text), 0)]
    check = verify_answer(result.answer, sources, counts, evidence=read[:5])
    citations = [c for c in check.citations if c.path != "(tool output)"]
    run.answer = result.answer
    run.steps = result.steps
    run.actual_tokens = result.prompt_tokens + result.completion_tokens
    run.citations = [c.to_dict() for c in citations]
    run.error = None if result.stopped == "answered" else result.steps[-1].get("detail")
    seconds = round(time.perf_counter() - started, 3)
    run.duration_ms = seconds * 1000
    with session_factory.begin() as s:
        s.add(run)
    return AskResult(
        run_id=run.id, corpus=corpus_name, question=question, answer=result.answer, strategy=AGENT,
        reason=reason if result.stopped == "answered" else f"{reason}; stopped: {run.error}",
        model=run.model, estimated_tokens=0, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, seconds=seconds, citations=citations, forced=True,
        routed_strategy=AGENT, decision=run.decision, steps=result.steps, flags=check.unverified,
    )
