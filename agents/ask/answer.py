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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import prompts
from corral.agents.ask.model import ChatModel
from corral.agents.ask.options import AskOptions
from corral.agents.ask.planning import (
    Plan,
    PlanSettings,
    evidence_spans,
    line_counts,
    make_plan,
    read_for,
)
from corral.agents.ask.reading import read_passages
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
from corral.agents.backends.prefix import can_probe, probe_prefix_cache
from corral.agents.citations import Citation, verify_answer
from corral.agents.executor import BudgetExceeded, ExecutionResult, PlanExecutor, Usage, screen
from corral.agents.retrieval import (
    HEADER_TOKENS,
    HybridSearcher,
    Passage,
    corpus_parts,
    whole_corpus,
)
from corral.agents.routing import Strategy, context_budget
from corral.core.db import Corpus, Run
from corral.core.errors import InvalidInputError, ModelError
from corral.inference.errors import InferenceError

__all__ = ["ask"]

_MIN_BUDGET = 64
AGENT = "agent"  # what a run records when the model's own reading with the tools answered


@dataclass(slots=True)
class _Answer:
    text: str
    passages: list[Passage]  # what the model was given, numbered
    evidence: list[Passage]
    used: str  # the strategy that answered, or "agent"
    tools: ExecutionResult | None = None  # the model's own reading, when it answered


def ask(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    question: str,
    *,
    model: ChatModel,
    searcher: HybridSearcher,
    options: AskOptions | None = None,
    strategy: Strategy | None = None,
    tool_chat: BaseChatModel | None = None,
) -> AskResult:
    """Answer ``question`` from the corpus with the strategy the router picks (or ``strategy``);
    ``tool_chat`` (the same backend, LangChain-native) lets Self-Route read on with the tools."""
    opts = options or AskOptions()
    trace = Trace(Usage(opts.budget))
    with refusals(session_factory, corpus_name, question, trace, backend=opts.backend, model=model.name):
        question, plan, planned, counts = _route(session_factory, corpus_name, question, model, searcher,
                                                 opts, strategy, trace)
    decision = plan.decision
    corpus_id = plan.corpus_id
    tools = corpus_tools(session_factory, searcher, corpus_id, opts.top_k)
    executor = PlanExecutor(bind(tool_chat, tools) if opts.self_route_turns else None, tools,
                            usage=trace.usage, log=trace.steps)
    run = Run(corpus_id=corpus_id, question=question, strategy=decision.strategy.value,
              strategy_reason=decision.reason, forced_strategy=strategy.value if strategy else None,
              decision=decision.to_record(), backend=opts.backend,
              estimated_tokens=decision.estimated_tokens, model=model.name)
    reader = _Reader(session_factory, question, plan, model, opts, trace, executor, counts, planned)
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
        reason=reason, model=model.name, estimated_tokens=decision.estimated_tokens,
        prompt_tokens=trace.prompt_tokens, completion_tokens=trace.completion_tokens, seconds=seconds,
        citations=citations, forced=strategy is not None, routed_strategy=routed,
        decision=decision.to_record(), steps=run.steps, flags=trace.flags + unverified,
    )


def _route(
    session_factory: sessionmaker[Session], corpus_name: str, question: str, model: ChatModel,
    searcher: HybridSearcher, opts: AskOptions, strategy: Strategy | None, trace: Trace,
) -> tuple[str, Plan, dict[Strategy, list[Passage]], dict[str, int]]:
    """Check the question and the corpus, measure, search and route; the trace records the decision.
    Returns the stripped question, the plan, what scoped-stuff and retrieve would read, line counts."""
    question = check_question(question)
    with session_factory() as session:
        corpus = open_corpus(session, corpus_name, trace)
        q_tokens = model.count_tokens(question)
        window_budget = context_budget(model.context_window, q_tokens, opts.max_new_tokens,
                                       prompts.PROMPT_OVERHEAD)
        if window_budget < _MIN_BUDGET:
            raise InvalidInputError(
                f"the question takes {q_tokens} tokens, leaving no room for sources in the "
                f"{model.context_window}-token window of {model.name}"
            )
        # One answer's prompt must also fit the run's token budget.
        budget = min(window_budget, context_budget(opts.budget.max_tokens, q_tokens, opts.max_new_tokens,
                                                   prompts.PROMPT_OVERHEAD))
        settings = _prefix_settings(session, corpus, question, model, opts.plan_settings(q_tokens),
                                    budget, q_tokens)
        plan = make_plan(session, corpus, question, budget=budget, window=model.context_window,
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


def _prefix_settings(session: Session, corpus: Corpus, question: str, model: ChatModel,
                     settings: PlanSettings, budget: int, q_tokens: int) -> PlanSettings:
    """Ask the backend's prefix cache how much of the stuffed prompt it holds (when the corpus fits
    and the backend can say); otherwise keep what settings declare."""
    if not can_probe(model) or corpus.token_count + HEADER_TOKENS * corpus.document_count > budget:
        return settings  # no cache to ask, or the corpus does not fit: stuffing is not cheap anyway
    docs = [_defang(p)[0] for p in whole_corpus(session, corpus.id, budget)]
    probe = probe_prefix_cache(model, prompts.answer_messages(docs, question))
    if probe is None:
        return settings
    return replace(settings, prefix_cached=probe.covers(q_tokens + 32),
                   prefix_cached_tokens=probe.cached_tokens)


def _defang(p: Passage) -> tuple[Passage, tuple[str, ...]]:
    """``p`` with injection-looking lines defanged, and the patterns found (the same for any reader)."""
    s = screen(p.text)
    if not s.suspicious:
        return p, ()
    return Passage(p.number, p.path, p.start_line, p.end_line, s.text, p.tokens, p.score, p.page), s.flags


def _verify(ans: _Answer, counts: Mapping[str, int]) -> tuple[list[Citation], list[str]]:
    if ans.tools is not None:
        citations, unverified = verify_tool_answer(ans.text, ans.tools, counts, read_before=ans.passages,
                                                   evidence_before=ans.evidence)
        return ordered(citations), unverified
    check = verify_answer(ans.text, ans.passages, counts, ans.evidence)
    return ordered(check.citations), check.unverified


class _Reader:
    """One routed run's reading and answering, along the plan's chain (Self-Route)."""

    def __init__(self, session_factory: sessionmaker[Session], question: str, plan: Plan, model: ChatModel,
                 opts: AskOptions, trace: Trace, executor: PlanExecutor, counts: Mapping[str, int],
                 planned: dict[Strategy, list[Passage]]) -> None:
        self._sf = session_factory
        self._q = question
        self._plan = plan
        self._model = model
        self._opts = opts
        self._trace = trace
        self._ex = executor
        self._counts = counts
        self._planned = planned

    def answer(self) -> _Answer:
        """Run the decided strategy, escalating along the fallback chain while the model says the
        context cannot answer; the first such verdict first lets the model read on with the tools."""
        chain = self._plan.chain
        read_on = self._ex.can_run
        last: _Answer | None = None
        for i, strategy in enumerate(chain):
            last = self._map_reduce() if strategy is Strategy.MAP_REDUCE else self._single(strategy)
            if i + 1 < len(chain) and prompts.says_unanswerable(last.text):
                if read_on:
                    read_on = False
                    found = self._read_on(last)
                    if found is not None:
                        return found
                self._trace.add("escalate", source=strategy.value, to=chain[i + 1].value,
                                why="the model said the context cannot answer")
                continue
            break
        assert last is not None  # the chain always has a first strategy
        return last

    def _single(self, strategy: Strategy) -> _Answer:
        planned = self._planned.get(strategy)
        if planned is None:
            with self._sf() as session:
                planned = read_for(session, self._plan, strategy, self._opts.max_map_calls)
        self._ex.turn("router", strategy=strategy.value, reads=len(planned),
                      tokens=sum(p.tokens for p in planned))
        passages = self._screened(read_passages(self._ex, planned, self._counts))
        text = self._generate(prompts.answer_messages(passages, self._q), passages, strategy.value)
        evidence = list(passages) if strategy is Strategy.RETRIEVE else evidence_spans(self._plan.ranked,
                                                                                       passages)
        return _Answer(text, passages, evidence, strategy.value)

    def _map_reduce(self) -> _Answer:
        opts, trace = self._opts, self._trace
        with self._sf() as session:
            parts = corpus_parts(session, self._plan.corpus_id, self._plan.budget)
        if len(parts) > opts.max_map_calls:
            trace.add("note", text=f"map-reduce reads the first {opts.max_map_calls} of {len(parts)} "
                      "parts (the map-call budget)")
            trace.flags.append(f"map-reduce read {opts.max_map_calls} of {len(parts)} parts")
            parts = parts[: opts.max_map_calls]
        self._ex.turn("router", strategy=Strategy.MAP_REDUCE.value, parts=len(parts),
                      reads=sum(len(p) for p in parts), tokens=sum(p.tokens for part in parts for p in part))
        notes: list[str] = []
        read: list[Passage] = []
        for part in parts:
            got = self._screened(read_passages(self._ex, part, self._counts, first_number=len(read) + 1))
            read += got
            note = self._generate(prompts.map_messages(got, self._q), got, "map")
            if not prompts.says_unanswerable(note):
                notes.append(note)
        if not notes:
            text = "The collection does not contain the answer (no part had relevant facts)."
        elif len(notes) == 1:
            text = notes[0]
        else:
            text = self._generate(prompts.reduce_messages(notes, self._q), (), "reduce")
        return _Answer(text, read, evidence_spans(self._plan.ranked, read), Strategy.MAP_REDUCE.value)

    def _read_on(self, last: _Answer) -> _Answer | None:
        """Self-Route with tools: the model reads on for a few turns, leaving the budget room to
        escalate (a read turn and an answer) if it finds nothing."""
        usage = self._trace.usage
        turns = min(self._opts.self_route_turns, usage.budget.max_steps - usage.steps - 2)
        if turns < 2:  # a tool turn and an answer turn at least
            self._trace.add("note", text="no steps left for the model to read on with the tools")
            return None
        self._trace.add("read-on", source=last.used, turns=turns,
                        why="the model said the context cannot answer: it reads on with the corpus tools")
        seen = ", ".join(p.label for p in last.passages[:30])
        context = (f"Already read without finding the answer: {seen or 'nothing'}. Use the tools to read "
                   "elsewhere, then answer citing path:start-end.")
        try:
            result = self._ex.run(self._q, context=context, max_turns=turns)
        except InferenceError as exc:  # e.g. the conversation outgrew the window: escalate instead
            self._trace.add("note", text=f"reading on with the tools failed: {exc}")
            return None
        self._trace.prompt_tokens += result.prompt_tokens
        self._trace.completion_tokens += result.completion_tokens
        if result.stopped != "answered" or prompts.says_unanswerable(result.answer):
            return None
        return _Answer(result.answer, last.passages, last.evidence, AGENT, tools=result)

    def _screened(self, passages: Sequence[Passage]) -> list[Passage]:
        """Screen every passage for injection patterns; flagged ones are defanged and noted on the Run."""
        out: list[Passage] = []
        for p in passages:
            safe, flags = _defang(p)
            if flags:
                self._trace.flags.append(f"{p.label}: possible prompt injection ({', '.join(flags)}), "
                                         "defanged")
                self._trace.add("screen", label=p.label, flags=list(flags))
            out.append(safe)
        return out

    def _generate(self, messages: list[dict[str, str]], passages: Sequence[Passage], label: str) -> str:
        trace = self._trace
        # Stop before a call that would overspend: its prompt is at least the sources it carries.
        trace.usage.check(upcoming_tokens=sum(p.tokens for p in passages) + self._opts.max_new_tokens)
        gen = self._model.chat(messages, self._opts.max_new_tokens)
        trace.usage.spend(gen.prompt_tokens + gen.completion_tokens)
        trace.prompt_tokens += gen.prompt_tokens
        trace.completion_tokens += gen.completion_tokens
        trace.add("generate", strategy=label, prompt_tokens=gen.prompt_tokens,
                  completion_tokens=gen.completion_tokens, seconds=round(gen.seconds, 3),
                  finish_reason=gen.finish_reason)
        return gen.text
