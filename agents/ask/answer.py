"""``ask``: one question over one corpus — route, read, generate, self-route, cite — recorded as a Run.

The Run is stored whether generation succeeds or not: the decision with its inputs, reasons and
per-strategy estimates, every step (search, read, generate, escalate) and the verified citations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import prompts
from corral.agents.ask.model import ChatModel
from corral.agents.ask.planning import (
    Plan,
    PlanSettings,
    evidence_spans,
    line_counts,
    make_plan,
    read_for,
)
from corral.agents.citations import Citation, Verification, verify_answer
from corral.agents.executor import Budget, BudgetExceeded, Usage, screen
from corral.agents.retrieval import HybridSearcher, Passage, corpus_parts, scoped_documents
from corral.agents.routing import Strategy, context_budget
from corral.core.db import Job, JobState, Run
from corral.core.errors import ConflictError, InvalidInputError, ModelError
from corral.core.services import get_corpus
from corral.inference.errors import InferenceError

__all__ = ["MAX_QUESTION_CHARS", "AskOptions", "AskResult", "ask", "check_question", "corpus_indexing"]

MAX_QUESTION_CHARS = 8000
_MIN_BUDGET = 64


@dataclass(frozen=True, slots=True)
class AskOptions:
    """Per-deployment knobs (from settings). Costs are per 1,000 tokens in the backend's currency."""

    max_new_tokens: int = 160
    top_k: int = 8
    expand_limit: int = 512  # widen a hit to its function/section/file when that costs <= this
    backend: str = "embedded"
    prefix_cached: bool = False
    cost_per_1k_input: float = 0.0
    cost_per_1k_cached_input: float = 0.0
    cost_per_1k_output: float = 0.0
    max_map_calls: int = 16
    budget: Budget = field(default_factory=Budget)

    def plan_settings(self, question_tokens: int) -> PlanSettings:
        return PlanSettings(
            top_k=self.top_k, expand_limit=self.expand_limit, prefix_cached=self.prefix_cached,
            cost_per_1k_input=self.cost_per_1k_input, cost_per_1k_cached_input=self.cost_per_1k_cached_input,
            cost_per_1k_output=self.cost_per_1k_output, max_new_tokens=self.max_new_tokens,
            per_call_overhead=prompts.PROMPT_OVERHEAD + question_tokens, max_map_calls=self.max_map_calls,
        )


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
class _Trace:
    """What the run did so far; becomes ``Run.steps`` and the result's token totals."""

    usage: Usage
    steps: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flags: list[str] = field(default_factory=list)

    def add(self, step: str, **data: Any) -> None:
        self.steps.append({"step": step, "t_ms": round(self.usage.seconds * 1000), **data})


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


def ask(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    model: ChatModel,
    searcher: HybridSearcher,
    options: AskOptions | None = None,
    strategy: Strategy | None = None,
) -> AskResult:
    """Answer ``question`` from the corpus with the strategy the router picks (or ``strategy``)."""
    opts = options or AskOptions()
    question = check_question(question)
    trace = _Trace(Usage(opts.budget))
    with session_factory() as session:
        corpus = get_corpus(session, corpus_name)
        indexing = corpus_indexing(session, corpus.id)
        if corpus.document_count == 0:
            still = " (its ingest job is still running)" if indexing else ""
            raise ConflictError(
                f"corpus {corpus_name!r} has no indexed documents yet{still}: ingest some, or wait "
                "for its ingest job to finish"
            )
        if indexing:
            trace.add("note", text=f"the corpus is still indexing: answering from the "
                      f"{corpus.document_count} documents indexed so far")
        q_tokens = model.count_tokens(question)
        budget = context_budget(model.context_window, q_tokens, opts.max_new_tokens,
                                prompts.PROMPT_OVERHEAD)
        if budget < _MIN_BUDGET:
            raise InvalidInputError(
                f"the question takes {q_tokens} tokens, leaving no room for sources in the "
                f"{model.context_window}-token window of {model.name}"
            )
        plan = make_plan(session, corpus, question, budget=budget, window=model.context_window,
                         searcher=searcher, settings=opts.plan_settings(q_tokens), forced=strategy)
        decision = plan.decision
        trace.add("route", strategy=decision.strategy.value, reason=decision.reason,
                  question_type=plan.signals.type.value, cue=plan.signals.matched,
                  fallback=[s.value for s in decision.fallback])
        trace.add("search", hits=len(plan.ranked), hybrid=searcher.hybrid,
                  top=[{"label": f"{r.chunk.document.path}:{r.chunk.start_line}-{r.chunk.end_line}",
                        "score": round(r.score, 4)} for r in plan.ranked[:5]])
        # Whole documents for scoped-stuff are read now, while the hit rows are attached.
        prepared = {Strategy.RETRIEVE: plan.retrieved}
        if Strategy.SCOPED_STUFF in plan.chain:
            prepared[Strategy.SCOPED_STUFF] = scoped_documents(plan.ranked, plan.scope_budget,
                                                               plan.scope_docs)
        counts = line_counts(session, corpus.id)
        corpus_id = corpus.id

    run = Run(corpus_id=corpus_id, question=question, strategy=decision.strategy.value,
              strategy_reason=decision.reason, forced_strategy=strategy.value if strategy else None,
              decision=decision.to_record(), backend=opts.backend,
              estimated_tokens=decision.estimated_tokens, model=model.name)
    try:
        text, passages, evidence, used = _execute(
            session_factory, question, plan, model, opts, trace, prepared)
    except (InferenceError, BudgetExceeded) as exc:
        run.steps, run.error = trace.steps, str(exc)
        run.actual_tokens = trace.prompt_tokens + trace.completion_tokens
        _record(session_factory, run, trace)
        if isinstance(exc, BudgetExceeded):
            raise ModelError(f"the run stopped: {exc}") from exc
        raise ModelError(str(exc)) from exc
    check = verify_answer(text, passages, counts, evidence)
    flags = trace.flags + check.unverified
    run.strategy = used.value
    run.answer = text
    run.actual_tokens = trace.prompt_tokens + trace.completion_tokens
    run.citations = [c.to_dict() for c in _order(check)]
    run.steps = trace.steps + ([{"step": "verify", "flags": check.unverified}] if check.unverified else [])
    seconds = _record(session_factory, run, trace)
    return AskResult(
        run_id=run.id, corpus=corpus_name, question=question, answer=text, strategy=used.value,
        reason=decision.reason if used is decision.strategy
        else f"{decision.reason}; escalated to {used.value}: the model said the context cannot answer",
        model=model.name, estimated_tokens=decision.estimated_tokens,
        prompt_tokens=trace.prompt_tokens, completion_tokens=trace.completion_tokens, seconds=seconds,
        citations=_order(check), forced=strategy is not None, routed_strategy=decision.strategy.value,
        decision=decision.to_record(), steps=run.steps, flags=flags,
    )


def _order(check: Verification) -> list[Citation]:
    return sorted(check.citations, key=lambda c: (not c.cited_by_model, not c.verified, -(c.score or 0.0)))


def _generate(model: ChatModel, messages: list[dict[str, str]], max_new: int, trace: _Trace,
              label: str) -> str:
    trace.usage.check()
    gen = model.chat(messages, max_new)
    trace.usage.spend(gen.prompt_tokens + gen.completion_tokens)
    trace.prompt_tokens += gen.prompt_tokens
    trace.completion_tokens += gen.completion_tokens
    trace.add("generate", strategy=label, prompt_tokens=gen.prompt_tokens,
              completion_tokens=gen.completion_tokens, seconds=round(gen.seconds, 3),
              finish_reason=gen.finish_reason)
    return gen.text


def _screened(passages: Sequence[Passage], trace: _Trace) -> list[Passage]:
    """Screen every passage for injection patterns; flagged ones are defanged and noted on the Run."""
    out: list[Passage] = []
    for p in passages:
        s = screen(p.text)
        if s.suspicious:
            trace.flags.append(f"{p.label}: possible prompt injection ({', '.join(s.flags)}), defanged")
            trace.add("screen", label=p.label, flags=list(s.flags))
            p = Passage(p.number, p.path, p.start_line, p.end_line, s.text, p.tokens, p.score, p.page)
        out.append(p)
    return out


def _execute(
    session_factory: sessionmaker[Session], question: str, plan: Plan, model: ChatModel,
    opts: AskOptions, trace: _Trace, prepared: dict[Strategy, list[Passage]],
) -> tuple[str, list[Passage], list[Passage], Strategy]:
    """Run the decided strategy, escalating along the fallback chain while the model says the
    context cannot answer (Self-Route). Returns the answer, the passages read, evidence, strategy used."""
    chain = plan.chain
    text = ""
    passages: list[Passage] = []
    used = chain[0]
    for i, strategy in enumerate(chain):
        used = strategy
        if strategy is Strategy.MAP_REDUCE:
            text, passages = _map_reduce(session_factory, plan.corpus_id, question, model, opts, trace,
                                         plan.budget)
        else:
            if strategy not in prepared:
                with session_factory() as session:
                    prepared[strategy] = read_for(session, plan, strategy, opts.max_map_calls)
            passages = _screened(prepared[strategy], trace)
            trace.add("read", strategy=strategy.value, passages=len(passages),
                      tokens=sum(p.tokens for p in passages))
            text = _generate(model, prompts.answer_messages(passages, question), opts.max_new_tokens,
                             trace, strategy.value)
        if i + 1 < len(chain) and prompts.says_unanswerable(text):
            trace.add("escalate", source=strategy.value, to=chain[i + 1].value,
                      why="the model said the context cannot answer")
            continue
        break
    evidence = list(passages) if used is Strategy.RETRIEVE else evidence_spans(plan.ranked, passages)
    return text, passages, evidence, used


def _map_reduce(
    session_factory: sessionmaker[Session], corpus_id: int, question: str, model: ChatModel,
    opts: AskOptions, trace: _Trace, budget: int,
) -> tuple[str, list[Passage]]:
    with session_factory() as session:
        parts = corpus_parts(session, corpus_id, budget)
    if len(parts) > opts.max_map_calls:
        trace.add("note", text=f"map-reduce reads the first {opts.max_map_calls} of {len(parts)} parts "
                  "(the map-call budget)")
        trace.flags.append(f"map-reduce read {opts.max_map_calls} of {len(parts)} parts")
        parts = parts[: opts.max_map_calls]
    notes: list[str] = []
    read: list[Passage] = []
    for n, part in enumerate(parts, start=1):
        part = _screened(part, trace)
        read += part
        trace.add("read", strategy="map", part=n, passages=len(part), tokens=sum(p.tokens for p in part))
        note = _generate(model, prompts.map_messages(part, question), opts.max_new_tokens, trace, "map")
        if not prompts.says_unanswerable(note):
            notes.append(note)
    if not notes:
        return "The collection does not contain the answer (no part had relevant facts).", read
    if len(notes) == 1:
        return notes[0], read
    return _generate(model, prompts.reduce_messages(notes, question), opts.max_new_tokens, trace,
                     "reduce"), read


def _record(session_factory: sessionmaker[Session], run: Run, trace: _Trace) -> float:
    seconds = round(trace.usage.seconds, 3)
    run.duration_ms = seconds * 1000
    if not run.steps:
        run.steps = trace.steps
    with session_factory.begin() as session:
        session.add(run)
    return seconds
