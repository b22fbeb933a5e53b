"""``ask``: one question over one corpus — route, read with the corpus tools, generate, self-route, cite.

The router's choice becomes the plan executor's opening turn: what the strategy reads is run as
``read_document`` / ``read_span`` calls of the corpus tools, under the run's budget (steps, tokens,
wall time), each recorded as a step; the model then answers from what was read. When the model says
that context cannot answer (Self-Route) and the backend can call tools, it reads on with the tools for
a few turns before the run escalates along the router's fallback chain.

The Run is stored whether generation succeeds or not: the decision with its inputs, reasons and
per-strategy estimates, every step (route, search, read turns, tool calls, generate, escalate) and the
verified citations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import prompts
from corral.agents.ask.chain import AGENT, Answer, ChainReader, defang
from corral.agents.ask.options import AskOptions
from corral.agents.ask.planning import Plan, PlanSettings, line_counts, make_plan
from corral.agents.ask.record import (
    AskResult,
    Trace,
    check_question,
    open_corpus,
    ordered,
    refusals,
    save_run,
)
from corral.agents.ask.tooling import bind, corpus_tools, verify_tool_answer
from corral.agents.backends import can_probe, context_window, model_name, probe_prefix_cache
from corral.agents.citations import Citation, verify_answer
from corral.agents.executor import BudgetExceeded, PlanExecutor, Usage
from corral.agents.retrieval import HEADER_TOKENS, Passage, Searcher, whole_corpus
from corral.agents.routing import Strategy, context_budget
from corral.core.db import Corpus, Run
from corral.core.errors import InvalidInputError, ModelError
from corral.inference.errors import InferenceError

__all__ = ["ask"]

_MIN_BUDGET = 64


def ask(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    chat: BaseChatModel,
    searcher: Searcher,
    options: AskOptions | None = None,
    strategy: Strategy | None = None,
) -> AskResult:
    """Answer ``question`` from the corpus with the strategy the router picks (or ``strategy``). When
    ``chat`` can call tools, Self-Route lets it read on with them before escalating. ``chat`` is touched
    only once the question and the corpus are accepted: a lazily loaded model is not loaded to refuse."""
    opts = options or AskOptions()
    trace = Trace(Usage(opts.budget))
    name = model_name(chat)
    with refusals(session_factory, corpus_name, question, trace, backend=opts.backend, model=name):
        question, plan, planned, counts = _route(session_factory, corpus_name, question, chat, searcher,
                                                 opts, strategy, trace)
    decision = plan.decision
    corpus_id = plan.corpus_id
    tools = corpus_tools(session_factory, searcher, corpus_id, opts.top_k)
    executor = PlanExecutor(bind(chat, tools) if opts.self_route_turns else None, tools,
                            usage=trace.usage, log=trace.steps)
    run = Run(corpus_id=corpus_id, question=question, strategy=decision.strategy.value,
              strategy_reason=decision.reason, forced_strategy=strategy.value if strategy else None,
              decision=decision.to_record(), backend=opts.backend,
              estimated_tokens=decision.estimated_tokens, model=name)
    reader = ChainReader(session_factory, question, plan, chat, opts, trace, executor, counts, planned)
    try:
        ans = reader.answer()
    except (InferenceError, BudgetExceeded) as exc:
        run.error = str(exc)
        save_run(session_factory, run, trace)
        if isinstance(exc, BudgetExceeded):
            raise ModelError(f"the run stopped: {exc}") from exc
        raise ModelError(str(exc)) from exc
    citations, unverified = _verify(ans, counts)
    run.strategy = ans.used
    run.answer = ans.text
    run.citations = [c.to_dict() for c in citations]
    if unverified:
        trace.steps.append({"step": "verify", "flags": unverified})
    seconds = save_run(session_factory, run, trace)
    routed = decision.strategy.value
    if ans.used == routed:
        reason = decision.reason
    elif ans.used == AGENT:
        reason = (f"{decision.reason}; the model said the {routed} context cannot answer and read on "
                  "with the corpus tools")
    else:
        reason = f"{decision.reason}; escalated to {ans.used}: the model said the context cannot answer"
    return AskResult(
        run_id=run.id, corpus=corpus_name, question=question, answer=ans.text, strategy=ans.used,
        reason=reason, model=name, estimated_tokens=decision.estimated_tokens,
        prompt_tokens=trace.prompt_tokens, completion_tokens=trace.completion_tokens, seconds=seconds,
        citations=citations, forced=strategy is not None, routed_strategy=routed,
        decision=decision.to_record(), steps=run.steps, flags=trace.flags + unverified,
    )


def _route(
    session_factory: sessionmaker[Session], corpus_name: str, question: str, chat: BaseChatModel,
    searcher: Searcher, opts: AskOptions, strategy: Strategy | None, trace: Trace,
) -> tuple[str, Plan, dict[Strategy, list[Passage]], dict[str, int]]:
    """Check the question and the corpus, measure, search and route; the trace records the decision.
    Returns the stripped question, the plan, what scoped-stuff and retrieve would read, line counts."""
    question = check_question(question)
    with session_factory() as session:
        corpus = open_corpus(session, corpus_name, trace)
        q_tokens = chat.get_num_tokens(question)
        window = context_window(chat)
        window_budget = context_budget(window, q_tokens, opts.max_new_tokens,
                                       prompts.PROMPT_OVERHEAD)
        if window_budget < _MIN_BUDGET:
            raise InvalidInputError(
                f"the question takes {q_tokens} tokens, leaving no room for sources in the "
                f"{window}-token window of {model_name(chat)}"
            )
        # One answer's prompt must also fit the run's token budget.
        budget = min(window_budget, context_budget(opts.budget.max_tokens, q_tokens, opts.max_new_tokens,
                                                   prompts.PROMPT_OVERHEAD))
        settings = _prefix_settings(session, corpus, question, chat, opts.plan_settings(q_tokens),
                                    budget, q_tokens)
        plan = make_plan(session, corpus, question, budget=budget, window=window,
                         searcher=searcher, settings=settings, forced=strategy)
        decision = plan.decision
        trace.add("route", strategy=decision.strategy.value, reason=decision.reason,
                  question_type=plan.signals.type.value, cue=plan.signals.matched,
                  fallback=[s.value for s in decision.fallback])
        trace.add("search", hits=len(plan.ranked), hybrid=searcher.hybrid,
                  top=[{"label": f"{r.chunk.document.path}:{r.chunk.start_line}-{r.chunk.end_line}",
                        "score": round(r.score, 4)} for r in plan.ranked[:5]])
        # What scoped-stuff would read is planned now, while the hit rows are attached.
        planned = {Strategy.RETRIEVE: plan.retrieved}
        if Strategy.SCOPED_STUFF in plan.chain:
            planned[Strategy.SCOPED_STUFF] = plan.scoped()
        return question, plan, planned, line_counts(session, corpus.id)


def _prefix_settings(session: Session, corpus: Corpus, question: str, chat: BaseChatModel,
                     settings: PlanSettings, budget: int, q_tokens: int) -> PlanSettings:
    """Ask the backend's prefix cache how much of the stuffed prompt it holds (when the corpus fits
    and the backend can say); otherwise keep what settings declare."""
    if not can_probe(chat) or corpus.token_count + HEADER_TOKENS * corpus.document_count > budget:
        return settings  # no cache to ask, or the corpus does not fit: stuffing is not cheap anyway
    docs = [defang(p)[0] for p in whole_corpus(session, corpus.id, budget)]
    probe = probe_prefix_cache(chat, prompts.answer_messages(docs, question))
    if probe is None:
        return settings
    return replace(settings, prefix_cached=probe.covers(q_tokens + 32),
                   prefix_cached_tokens=probe.cached_tokens)


def _verify(ans: Answer, counts: Mapping[str, int]) -> tuple[list[Citation], list[str]]:
    if ans.tools is not None:
        citations, unverified = verify_tool_answer(ans.text, ans.tools, counts, read_before=ans.passages,
                                                   evidence_before=ans.evidence)
        return ordered(citations), unverified
    check = verify_answer(ans.text, ans.passages, counts, ans.evidence)
    return ordered(check.citations), check.unverified
