"""Planning a read: classify the question, search once, measure, route — no model call.

Shared by ``ask`` (which then generates) and the evaluation harness (which measures what each
strategy would read), so the numbers in ``bench/RESULTS.md`` are those of the real code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.agents.retrieval import (
    HEADER_TOKENS,
    Passage,
    Ranked,
    Searcher,
    corpus_parts,
    order_preserving,
    scoped_documents,
    scoped_tokens,
    whole_corpus,
)
from corral.agents.routing import (
    Decision,
    QuestionSignals,
    QuestionType,
    RouterInputs,
    Strategy,
    choose_strategy,
    classify_question,
    lexical_overlap,
)
from corral.core.db import Corpus, Document, DocumentStatus

__all__ = ["Plan", "PlanSettings", "evidence_spans", "line_counts", "make_plan", "read_for"]

MAX_SEARCH_DEPTH = 80  # hits retrieve may read
TOKENS_PER_HIT = 100  # search depth = retrieve budget / this: enough hits to fill it (chunks are larger)


@dataclass(frozen=True, slots=True)
class PlanSettings:
    top_k: int = 8  # the hits the router's signals and scoped-stuff look at
    retrieve_tokens: int = 8192  # retrieve fills its context up to this (and the window's budget)
    expand_limit: int = 512
    neighbours: int = 1
    scope_docs: int = 8  # scoped-stuff reads the documents of the best hits, at most this many
    prefix_cached: bool = False
    prefix_cached_tokens: int | None = None  # measured by asking the backend's prefix cache
    cost_per_1k_input: float = 0.0
    cost_per_1k_cached_input: float = 0.0
    cost_per_1k_output: float = 0.0
    max_new_tokens: int = 160
    per_call_overhead: int = 128
    max_map_calls: int = 16


@dataclass(slots=True)
class Plan:
    corpus_id: int
    budget: int
    signals: QuestionSignals
    ranked: list[Ranked]
    retrieved: list[Passage]
    decision: Decision
    settings: PlanSettings
    retrieve_budget: int

    @property
    def scope_budget(self) -> int:
        cap = self.decision.scope_cap
        return self.budget if cap is None else min(cap, self.budget)

    def scoped(self) -> list[Passage]:
        """What scoped-stuff reads: the best hits' documents whole, the rest of its budget filled with
        the other hits' passages (call while the hit rows are attached to a session)."""
        s = self.settings
        return scoped_documents(self.ranked, self.scope_budget, s.scope_docs, top_k=s.top_k,
                                fill=self.retrieve_budget, expand_limit=s.expand_limit,
                                neighbours=s.neighbours)

    @property
    def chain(self) -> tuple[Strategy, ...]:
        return (self.decision.strategy, *self.decision.fallback)


def make_plan(
    session: Session, corpus: Corpus, question: str, *, budget: int, window: int,
    searcher: Searcher, settings: PlanSettings, forced: Strategy | None = None,
    question_type: QuestionType | None = None,
) -> Plan:
    """Search and route ``question``; ``question_type`` overrides the classifier (evaluation labels)."""
    signals = classify_question(question)
    if question_type is not None:
        signals = QuestionSignals(question_type, signals.terms, signals.english, "given")
    # Retrieve fills its budget with as many ranked passages as fit: search deep enough for that.
    retrieve_budget = min(budget, settings.retrieve_tokens)
    depth = max(settings.top_k, min(MAX_SEARCH_DEPTH, retrieve_budget // TOKENS_PER_HIT))
    ranked = searcher.search(session, corpus.id, question, depth)
    retrieved = order_preserving(ranked, retrieve_budget, expand_limit=settings.expand_limit,
                                 neighbours=settings.neighbours)
    top = ranked[: settings.top_k]
    dense = [r.dense for r in top if r.dense is not None]
    inputs = RouterInputs(
        corpus_tokens=corpus.token_count, document_count=corpus.document_count, budget=budget,
        window=window, question_type=signals.type,
        retrieve_tokens=sum(p.tokens + HEADER_TOKENS for p in retrieved),
        scoped_tokens=scoped_tokens(top, settings.scope_docs),
        scoped_doc_tokens=_doc_tokens(top, settings.scope_docs),
        overlap=lexical_overlap(signals.terms, (r.chunk.text for r in top)),
        top_score=max(dense) if dense else None, english=signals.english,
        agreement=_agree(top) if searcher.hybrid else None,
        prefix_cached=settings.prefix_cached, prefix_cached_tokens=settings.prefix_cached_tokens,
        cost_per_1k_input=settings.cost_per_1k_input,
        cost_per_1k_cached_input=settings.cost_per_1k_cached_input,
        cost_per_1k_output=settings.cost_per_1k_output, max_new_tokens=settings.max_new_tokens,
        per_call_overhead=settings.per_call_overhead, max_map_calls=settings.max_map_calls,
        forced=forced,
    )
    return Plan(corpus.id, budget, signals, ranked, retrieved, choose_strategy(inputs), settings,
                retrieve_budget)


def _doc_tokens(ranked: Sequence[Ranked], max_docs: int) -> tuple[int, ...]:
    out: dict[int, int] = {}
    for r in ranked:
        if len(out) >= max_docs:
            break
        out.setdefault(r.chunk.document.id, r.chunk.document.token_count + HEADER_TOKENS)
    return tuple(out.values())


def _agree(ranked: Sequence[Ranked], top: int = 3) -> bool:
    """The best fused hit is in the top ``top`` of both the dense and the BM25 list."""
    if not ranked:
        return False
    best = ranked[0]
    return (best.dense_rank or top + 1) <= top and (best.keyword_rank or top + 1) <= top


def read_for(session: Session, plan: Plan, strategy: Strategy, max_map_calls: int) -> list[Passage]:
    """What ``strategy`` reads for ``plan`` (map-reduce: every part it would map, flattened)."""
    if strategy is Strategy.RETRIEVE:
        return plan.retrieved
    if strategy is Strategy.SCOPED_STUFF:
        return plan.scoped()
    if strategy is Strategy.STUFF:
        return whole_corpus(session, plan.corpus_id, plan.budget)
    parts = corpus_parts(session, plan.corpus_id, plan.budget)[:max_map_calls]
    return [p for part in parts for p in part]


def line_counts(session: Session, corpus_id: int) -> dict[str, int]:
    return dict(session.execute(
        select(Document.path, Document.line_count).where(
            Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
    ).all())


def evidence_spans(ranked: Sequence[Ranked], passages: Sequence[Passage]) -> list[Passage]:
    """For whole-document reads, point at the best-matching spans rather than at whole files."""
    numbers = {p.path: p.number for p in passages}
    return [
        Passage(numbers.get(r.chunk.document.path, 0), r.chunk.document.path, r.chunk.start_line,
                r.chunk.end_line, r.chunk.text, r.chunk.token_count, r.score, r.chunk.page)
        for r in ranked[:3]
    ]
