"""``ask``: one question over one corpus — plan, read with the corpus tools, generate, escalate, cite,
record.

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

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask.cite import answer_support, cite, cite_tool_answer
from corral.agents.ask.escalate import AGENT, Answer, Escalation
from corral.agents.ask.options import AskOptions
from corral.agents.ask.plan import Plan, plan_ask
from corral.agents.ask.progress import RunCancelled, progress_of
from corral.agents.ask.read import bind, corpus_tools
from corral.agents.ask.record import AskResult, Trace, new_run, refusals, save_run
from corral.agents.backends import model_name
from corral.agents.citations import Citation
from corral.agents.executor import BudgetExceeded, PlanExecutor, Usage
from corral.agents.retrieval import Searcher
from corral.agents.routing import Strategy
from corral.agents.safety import RunScreen, guards_answers, moderate_answer
from corral.core.db import RunState
from corral.core.errors import ModelError
from corral.inference.errors import InferenceError

__all__ = ["ask"]


def ask(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    chat: BaseChatModel,
    searcher: Searcher,
    options: AskOptions | None = None,
    strategy: Strategy | None = None,
    run_id: str | None = None,
) -> AskResult:
    """Answer ``question`` from the corpus with the strategy the router picks (or ``strategy``). When
    ``chat`` can call tools, Self-Route lets it read on with them before escalating. ``chat`` is touched
    only once the question and the corpus are accepted: a lazily loaded model is not loaded to refuse.

    ``run_id``: a run created beforehand (queued, then claimed by whoever runs it) that this one fills,
    reporting its decision, steps and answer text as events while it goes (see
    :mod:`corral.agents.ask.progress`); cancelling it raises :class:`RunCancelled` once stored."""
    opts = options or AskOptions()
    trace = Trace(Usage(opts.budget), progress=progress_of(session_factory, run_id))
    # A moderated answer is not streamed: no text of it leaves before the guard has passed it.
    trace.progress.withhold_text = guards_answers(opts.guard)
    name = model_name(chat)
    with refusals(session_factory, corpus_name, question, trace, backend=opts.backend, model=name,
                  workspace=opts.workspace), \
            session_factory() as session:
        plan = plan_ask(session, corpus_name, question, chat=chat, searcher=searcher, options=opts,
                        forced=strategy, trace=trace)
    decision = plan.decision
    trace.progress.decision(decision.to_record())
    screen = RunScreen(trace.decide, opts.guard)
    tools = corpus_tools(session_factory, searcher, plan.corpus_id, opts.top_k, screen)
    executor = PlanExecutor(bind(chat, tools) if opts.self_route_turns else None, tools,
                            usage=trace.usage, log=trace.steps, callbacks=trace.progress.callbacks("answer"))
    run = new_run(trace, corpus_id=plan.corpus_id, question=plan.question,
                  strategy=decision.strategy.value, strategy_reason=decision.reason,
                  forced_strategy=strategy.value if strategy else None, decision=decision.to_record(),
                  backend=opts.backend, estimated_tokens=decision.estimated_tokens, model=name)
    try:
        ans = Escalation(session_factory, plan, chat, trace, executor, screen).answer()
    except RunCancelled as exc:
        run.error = str(exc)
        save_run(session_factory, run, trace, state=RunState.CANCELLED, error_type="cancelled")
        raise
    except (InferenceError, BudgetExceeded) as exc:
        run.error = str(exc)
        save_run(session_factory, run, trace, error_type="model_error")
        if isinstance(exc, BudgetExceeded):
            raise ModelError(f"the run stopped: {exc}") from exc
        raise ModelError(str(exc)) from exc
    citations, unverified = _cite(ans, plan)
    run.strategy = ans.used
    run.answer = ans.text
    run.citations = [c.to_dict() for c in citations]
    support = answer_support(ans.text, citations)
    trace.add("verify", support=support, cited=sum(c.support == "cited" for c in citations),
              unsupported=sum(c.support == "unsupported" for c in citations),
              read=sum(c.support == "read" for c in citations), flags=unverified)
    run.blocked = moderate_answer(opts.guard, plan.question, ans.text, trace)

    def result(seconds: float) -> AskResult:
        return AskResult(
            run_id=run.id, corpus=corpus_name, question=plan.question, answer=ans.text,
            strategy=ans.used, reason=_reason(plan, ans), model=name,
            estimated_tokens=decision.estimated_tokens, prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens, seconds=seconds, citations=citations,
            forced=strategy is not None, routed_strategy=decision.strategy.value,
            decision=decision.to_record(), steps=run.steps, flags=trace.flags + unverified,
            support=support, safety=list(trace.safety), blocked=run.blocked,
        )

    return result(save_run(session_factory, run, trace, result=result))


def _cite(ans: Answer, plan: Plan) -> tuple[list[Citation], list[str]]:
    if ans.tools is not None:
        return cite_tool_answer(ans.text, ans.tools, plan.line_counts, read_before=ans.passages,
                                question=plan.question,
                                evidence_before=ans.evidence)
    return cite(ans.text, ans.passages, plan.line_counts, ans.evidence, plan.question)


def _reason(plan: Plan, ans: Answer) -> str:
    decision, routed = plan.decision, plan.decision.strategy.value
    if ans.used == routed:
        return decision.reason
    if ans.used == AGENT:
        return (f"{decision.reason}; the model said the {routed} context cannot answer and read on with "
                "the corpus tools")
    return f"{decision.reason}; escalated to {ans.used}: the model said the context cannot answer"
