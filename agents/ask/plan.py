"""Planning a read: check the question and the corpus, measure, search, route — no model call.

``make_plan`` is shared by ``ask`` and the evaluation harness (which measures what each strategy would
read), so the numbers in ``bench/RESULTS.md`` are those of the real code path. ``plan_ask`` adds what
only a live ask has: the checks that refuse a question before anything is loaded, the backend's window
and token counts, and its prefix cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from langchain_core.language_models import BaseChatModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.agents.ask import generate
from corral.agents.ask.options import AskOptions
from corral.agents.ask.record import MAX_QUESTION_CHARS, Trace
from corral.agents.backends import (
    PrefixProbe,
    can_probe,
    context_window,
    model_name,
    prefill_rate,
    probe_prefix_cache,
)
from corral.agents.executor import screen
from corral.agents.retrieval import (
    HEADER_TOKENS,
    Passage,
    Ranked,
    Searcher,
    corpus_parts,
    image_of,
    order_preserving,
    ranked_parts,
    scoped_doc_tokens,
    scoped_documents,
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
    context_budget,
    lexical_overlap,
)
from corral.core.db import Corpus, Document, DocumentStatus, Job, JobState
from corral.core.errors import ConflictError, InvalidInputError
from corral.core.services import DEFAULT_WORKSPACE, get_corpus

__all__ = [
    "Plan", "check_question", "evidence_spans", "line_counts", "make_plan", "open_corpus", "plan_ask",
]

MAX_SEARCH_DEPTH = 80  # hits retrieve may read
MAX_MAP_DEPTH = 400  # hits a retrieval-scoped map-reduce may read
TOKENS_PER_HIT = 100  # search depth = retrieve budget / this: enough hits to fill it (chunks are larger)
MIN_BUDGET = 64  # fewer tokens left for sources than this: the question is refused


@dataclass(slots=True)
class Plan:
    corpus_id: int
    question: str
    budget: int  # tokens one answer's sources may take
    signals: QuestionSignals
    ranked: list[Ranked]
    decision: Decision
    options: AskOptions
    retrieve_budget: int
    line_counts: dict[str, int] = field(default_factory=dict)  # per document path, for reads and citations
    search: Callable[[Session, int], list[Ranked]] | None = None  # the question searched again, k hits deep
    _reads: dict[Strategy, list[Passage]] = field(default_factory=dict)

    @property
    def chain(self) -> tuple[Strategy, ...]:
        """The decided strategy, then its fallbacks (Self-Route)."""
        return (self.decision.strategy, *self.decision.fallback)

    @property
    def scope_budget(self) -> int:
        cap = self.decision.scope_cap
        return self.budget if cap is None else min(cap, self.budget)

    def reads(self, session: Session, strategy: Strategy) -> list[Passage]:
        """What ``strategy`` reads (map-reduce: every part it would map, flattened), read from SQL once
        per plan. Scoped-stuff needs the hit rows attached: plan it in the session that searched."""
        got = self._reads.get(strategy)
        if got is None:
            got = self._reads[strategy] = self._read(session, strategy)
        return got

    def _read(self, session: Session, strategy: Strategy) -> list[Passage]:
        o = self.options
        if strategy is Strategy.RETRIEVE:
            return order_preserving(self.ranked, self.retrieve_budget, expand_limit=o.expand_limit,
                                    neighbours=o.neighbours)
        if strategy is Strategy.SCOPED_STUFF:
            return scoped_documents(self.ranked, self.scope_budget, o.scope_docs, top_k=o.top_k,
                                    fill=self.retrieve_budget, expand_limit=o.expand_limit,
                                    neighbours=o.neighbours)
        if strategy is Strategy.STUFF:
            return whole_corpus(session, self.corpus_id, self.budget)
        return [p for part in self.map_parts(session)[0] for p in part]

    def map_parts(self, session: Session) -> tuple[list[list[Passage]], str | None]:
        """The parts map-reduce reads, at most ``max_map_calls``: the whole corpus in document order,
        or — when the decision says its parts would outnumber the cap — the retrieval hits, best first,
        filling the cap's parts (in document order). With a note for the run when the corpus is not
        read whole."""
        o = self.options
        if self.decision.map_scoped:
            depth = max(len(self.ranked), min(MAX_MAP_DEPTH, o.max_map_calls * self.budget // TOKENS_PER_HIT))
            ranked = self.search(session, depth) if self.search is not None else self.ranked
            parts = ranked_parts(ranked, self.budget, o.max_map_calls, expand_limit=o.expand_limit,
                                 neighbours=o.neighbours)
            return parts, (f"map-reduce reads what retrieval points at in {len(parts)} parts: the whole "
                           f"corpus would take more than the map-call budget of {o.max_map_calls}")
        parts = corpus_parts(session, self.corpus_id, self.budget)
        if len(parts) <= o.max_map_calls:
            return parts, None
        return parts[: o.max_map_calls], (f"map-reduce reads the first {o.max_map_calls} of {len(parts)} "
                                          "parts (the map-call budget)")


def make_plan(
    session: Session, corpus: Corpus, question: str, *, budget: int, window: int, question_tokens: int,
    searcher: Searcher, options: AskOptions, forced: Strategy | None = None,
    question_type: QuestionType | None = None, prefix: PrefixProbe | None = None,
    stuffed: list[Passage] | None = None, reading_note: str | None = None,
) -> Plan:
    """Search and route ``question``; ``question_type`` overrides the classifier (evaluation labels);
    ``prefix`` is what the backend's prefix cache holds of the stuffed prompt (``stuffed``, when read)."""
    o = options
    signals = classify_question(question)
    if question_type is not None:
        signals = QuestionSignals(question_type, signals.terms, signals.english, "given")
    # Retrieve fills its budget with as many ranked passages as fit: search deep enough for that.
    retrieve_budget = min(budget, o.retrieve_tokens)
    depth = max(o.top_k, min(MAX_SEARCH_DEPTH, retrieve_budget // TOKENS_PER_HIT))
    ranked = searcher.search(session, corpus.id, question, depth)
    retrieved = order_preserving(ranked, retrieve_budget, expand_limit=o.expand_limit,
                                 neighbours=o.neighbours)
    top = ranked[: o.top_k]
    dense = [r.dense for r in top if r.dense is not None]
    doc_tokens = scoped_doc_tokens(top, o.scope_docs)
    inputs = RouterInputs(
        corpus_tokens=corpus.token_count, document_count=corpus.document_count, budget=budget,
        window=window, question_type=signals.type,
        retrieve_tokens=sum(p.tokens + HEADER_TOKENS for p in retrieved),
        scoped_tokens=sum(doc_tokens), scoped_doc_tokens=doc_tokens,
        overlap=lexical_overlap(signals.terms, (r.chunk.text for r in top)),
        top_score=max(dense) if dense else None, english=signals.english,
        agreement=_agree(top) if searcher.hybrid else None,
        prefix_cached=prefix.covers(question_tokens + 32) if prefix else o.prefix_cached,
        prefix_cached_tokens=prefix.cached_tokens if prefix else None,
        cost_per_1k_input=o.cost_per_1k_input, cost_per_1k_cached_input=o.cost_per_1k_cached_input,
        cost_per_1k_output=o.cost_per_1k_output, max_new_tokens=o.max_new_tokens,
        per_call_overhead=generate.PROMPT_OVERHEAD + question_tokens, max_map_calls=o.max_map_calls,
        forced=forced, reading_note=reading_note,
    )
    plan = Plan(corpus.id, question, budget, signals, ranked, choose_strategy(inputs), o, retrieve_budget)
    plan.search = lambda s, k: searcher.search(s, corpus.id, question, k)
    plan._reads[Strategy.RETRIEVE] = retrieved
    if stuffed is not None:
        plan._reads[Strategy.STUFF] = stuffed
    return plan


def plan_ask(
    session: Session, corpus_name: str, question: str, *, chat: BaseChatModel, searcher: Searcher,
    options: AskOptions, forced: Strategy | None, trace: Trace,
) -> Plan:
    """Check the question and the corpus (before ``chat`` is touched: a lazily loaded model is not
    loaded to refuse), measure, search and route; the trace records the decision."""
    question = check_question(question)
    corpus = open_corpus(session, corpus_name, trace, options.workspace)
    q_tokens = chat.get_num_tokens(question)
    window = context_window(chat)
    window_budget = context_budget(window, q_tokens, options.max_new_tokens, generate.PROMPT_OVERHEAD)
    if window_budget < MIN_BUDGET:
        raise InvalidInputError(f"the question takes {q_tokens} tokens, leaving no room for sources in the "
                                f"{window}-token window of {model_name(chat)}")
    # One answer's prompt must also fit the run's token budget.
    budget = min(window_budget, context_budget(options.budget.max_tokens, q_tokens, options.max_new_tokens,
                                               generate.PROMPT_OVERHEAD))
    reading = _reading_note(options, budget, chat)
    if options.reading_budget:
        budget = min(budget, options.reading_budget)
    prefix, stuffed = _probe(session, corpus, question, chat, budget)
    plan = make_plan(session, corpus, question, budget=budget, window=window, question_tokens=q_tokens,
                     searcher=searcher, options=options, forced=forced, prefix=prefix, stuffed=stuffed,
                     reading_note=reading)
    plan.line_counts = line_counts(session, corpus.id)
    if Strategy.SCOPED_STUFF in plan.chain:
        plan.reads(session, Strategy.SCOPED_STUFF)  # now, while the hit rows are attached
    decision = plan.decision
    trace.add("route", strategy=decision.strategy.value, reason=decision.reason,
              question_type=plan.signals.type.value, cue=plan.signals.matched,
              fallback=[s.value for s in decision.fallback])
    trace.add("search", hits=len(plan.ranked), hybrid=searcher.hybrid,
              top=[{"label": f"{r.chunk.document.path}:{r.chunk.start_line}-{r.chunk.end_line}",
                    "score": round(r.score, 4)} for r in plan.ranked[:5]])
    return plan


def _probe(session: Session, corpus: Corpus, question: str, chat: BaseChatModel, budget: int
           ) -> tuple[PrefixProbe | None, list[Passage] | None]:
    """Ask the backend's prefix cache how much of the stuffed prompt it holds, when the corpus fits and
    the backend can say; the corpus read for it is kept for stuffing."""
    if corpus.token_count + HEADER_TOKENS * corpus.document_count > budget or not can_probe(chat):
        return None, None  # the corpus does not fit (stuffing is not cheap anyway), or no cache to ask
    stuffed = whole_corpus(session, corpus.id, budget)
    # The prompt as the model will get it: the tools screen what they read the same way.
    shown = [replace(p, text=screen(p.text).text) for p in stuffed]
    return probe_prefix_cache(chat, generate.answer_messages(shown, question)), stuffed


def _reading_note(options: AskOptions, window_budget: int, chat: BaseChatModel) -> str | None:
    """Why the sources are capped below what the window holds, with what reading them costs in seconds
    where the backend has measured its prefill speed; None when the window's budget is the cap."""
    cap = options.reading_budget
    if not cap or cap >= window_budget:
        return None
    note = f"capped at a {cap}-token reading budget ({options.reading_source or 'configured'})"
    rate = prefill_rate(chat)
    if rate:
        note += f", about {cap / rate:.0f} s of prefill at the measured {rate:.0f} tokens/s"
    return note


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


def open_corpus(session: Session, name: str, trace: Trace, workspace: str = DEFAULT_WORKSPACE) -> Corpus:
    """The corpus to read: a ConflictError when it has no documents yet; a note on the trace when it is
    still indexing (the run answers from the documents indexed so far)."""
    corpus = get_corpus(session, name, workspace)
    indexing = session.scalar(
        select(Job.id).where(Job.corpus_id == corpus.id,
                             Job.state.in_([JobState.QUEUED, JobState.RUNNING])).limit(1)
    ) is not None
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


def line_counts(session: Session, corpus_id: int) -> dict[str, int]:
    return dict(session.execute(
        select(Document.path, Document.line_count).where(
            Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
    ).all())


def _agree(ranked: Sequence[Ranked], top: int = 3) -> bool:
    """The best fused hit is in the top ``top`` of both the dense and the BM25 list."""
    if not ranked:
        return False
    best = ranked[0]
    return (best.dense_rank or top + 1) <= top and (best.keyword_rank or top + 1) <= top


def evidence_spans(ranked: Sequence[Ranked], passages: Sequence[Passage]) -> list[Passage]:
    """For whole-document reads, point at the best-matching spans rather than at whole files."""
    numbers = {p.path: p.number for p in passages}
    return [
        Passage(numbers.get(r.chunk.document.path, 0), r.chunk.document.path, r.chunk.start_line,
                r.chunk.end_line, r.chunk.text, r.chunk.token_count, r.score, r.chunk.page,
                **image_of([r.chunk]))
        for r in ranked[:3]
    ]
