"""``ask_agent``: the model plans its own reading with the corpus tools, run by the plan executor.

The answer goes through the same citation checks as ``ask``: citations name ``path:lines``; each is
checked against the corpus, and quotations against the text the tools returned.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask.cite import answer_support, cite_tool_answer
from corral.agents.ask.escalate import AGENT
from corral.agents.ask.plan import check_question, line_counts, open_corpus
from corral.agents.ask.progress import RunCancelled, progress_of
from corral.agents.ask.read import bind, corpus_tools
from corral.agents.ask.record import AskResult, Trace, new_run, refusals, save_run
from corral.agents.backends import model_name
from corral.agents.executor import Budget, PlanExecutor, Usage
from corral.agents.retrieval import Searcher
from corral.agents.safety import GuardConfig, RunScreen, guards_answers, moderate_answer
from corral.core.db import RunState
from corral.core.errors import InvalidInputError, ModelError
from corral.core.services import DEFAULT_WORKSPACE
from corral.inference.errors import InferenceError

__all__ = ["ask_agent"]


def ask_agent(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    chat: BaseChatModel,
    searcher: Searcher,
    budget: Budget,
    backend: str = "embedded",
    top_k: int = 8,
    workspace: str = DEFAULT_WORKSPACE,
    run_id: str | None = None,
    guard: GuardConfig | None = None,
) -> AskResult:
    """Answer ``question`` by letting ``chat`` call the read-only corpus tools, within ``budget``.
    ``run_id``: a run created beforehand that this one fills, reporting as it goes (as ``ask``).
    ``guard``: the guard model screening what the tools return and moderating the answer."""
    trace = Trace(Usage(budget), progress=progress_of(session_factory, run_id))
    trace.progress.withhold_text = guards_answers(guard)  # no text before the guard passed it
    name = model_name(chat)
    with refusals(session_factory, corpus_name, question, trace, backend=backend, model=name,
                  workspace=workspace):
        question = check_question(question)
        with session_factory() as session:
            corpus_id = open_corpus(session, corpus_name, trace, workspace).id
            counts = line_counts(session, corpus_id)
        tools = corpus_tools(session_factory, searcher, corpus_id, top_k, RunScreen(trace.decide, guard))
        bound = bind(chat, tools)
        if bound is None:
            raise InvalidInputError("this chat backend cannot call tools; ask without --agent")
    reason = "forced by the request: the model plans its reading with the corpus tools"
    run = new_run(trace, corpus_id=corpus_id, question=question, strategy=AGENT, strategy_reason=reason,
                  forced_strategy=AGENT, backend=backend, model=name,
                  decision={"strategy": AGENT, "reasons": [reason], "tools": [t.name for t in tools],
                            "budget": {"steps": budget.max_steps, "tokens": budget.max_tokens,
                                       "seconds": budget.max_seconds}})
    trace.progress.decision(run.decision)
    try:
        result = PlanExecutor(bound, tools, usage=trace.usage, log=trace.steps,
                              callbacks=trace.progress.callbacks("answer")).run(question)
    except RunCancelled as exc:
        run.error = str(exc)
        save_run(session_factory, run, trace, state=RunState.CANCELLED, error_type="cancelled")
        raise
    except InferenceError as exc:
        run.error = str(exc)
        save_run(session_factory, run, trace, error_type="model_error")
        raise ModelError(str(exc)) from exc
    trace.spend(result.prompt_tokens, result.completion_tokens)
    citations, unverified = cite_tool_answer(result.answer, result, counts, question=question)
    run.answer = result.answer
    run.citations = [c.to_dict() for c in citations]
    support = answer_support(result.answer, citations)
    trace.add("verify", support=support, flags=unverified)
    run.error = None if result.stopped == "answered" else result.steps[-1].details.get("detail")
    run.blocked = moderate_answer(guard, question, result.answer, trace)

    def answered(seconds: float) -> AskResult:
        return AskResult(
            run_id=run.id, corpus=corpus_name, question=question, answer=result.answer, strategy=AGENT,
            reason=reason if result.stopped == "answered" else f"{reason}; stopped: {run.error}",
            model=name, estimated_tokens=0, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, seconds=seconds, citations=citations,
            forced=True, routed_strategy=AGENT, decision=run.decision, steps=run.steps, flags=unverified,
            support=support, safety=list(trace.safety), blocked=run.blocked,
        )

    # A run that stopped short (budget, loops) still answered, with what it read: it succeeded.
    return answered(save_run(session_factory, run, trace, state=RunState.SUCCEEDED, result=answered))
