"""Reading along the router's chain (Self-Route): each strategy's reads are a planned turn of tool
calls, the model answers from them, and a "the context cannot answer" verdict first lets the model read
on with the tools, then escalates to the next strategy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import prompts
from corral.agents.ask.generate import generate
from corral.agents.ask.options import AskOptions
from corral.agents.ask.planning import Plan, evidence_spans, read_for
from corral.agents.ask.reading import read_passages
from corral.agents.ask.record import Trace
from corral.agents.executor import ExecutionResult, PlanExecutor, screen
from corral.agents.retrieval import Passage, corpus_parts
from corral.agents.routing import Strategy
from corral.inference.errors import InferenceError

__all__ = ["AGENT", "Answer", "ChainReader", "defang"]

AGENT = "agent"  # what a run records when the model's own reading with the tools answered


@dataclass(slots=True)
class Answer:
    text: str
    passages: list[Passage]  # what the model was given, numbered
    evidence: list[Passage]
    used: str  # the strategy that answered, or "agent"
    tools: ExecutionResult | None = None  # the model's own reading, when it answered


def defang(p: Passage) -> tuple[Passage, tuple[str, ...]]:
    """``p`` with injection-looking lines defanged, and the patterns found (the same for any reader)."""
    s = screen(p.text)
    if not s.suspicious:
        return p, ()
    return Passage(p.number, p.path, p.start_line, p.end_line, s.text, p.tokens, p.score, p.page), s.flags


class ChainReader:
    """One routed run's reading and answering, along the plan's chain (Self-Route)."""

    def __init__(self, session_factory: sessionmaker[Session], question: str, plan: Plan, chat: BaseChatModel,
                 opts: AskOptions, trace: Trace, executor: PlanExecutor, counts: Mapping[str, int],
                 planned: dict[Strategy, list[Passage]]) -> None:
        self._sf = session_factory
        self._q = question
        self._plan = plan
        self._chat = chat
        self._opts = opts
        self._trace = trace
        self._ex = executor
        self._counts = counts
        self._planned = planned

    def answer(self) -> Answer:
        """Run the decided strategy, escalating along the fallback chain while the model says the
        context cannot answer; the first such verdict first lets the model read on with the tools."""
        chain = self._plan.chain
        read_on = self._ex.can_run
        last: Answer | None = None
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

    def _single(self, strategy: Strategy) -> Answer:
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
        return Answer(text, passages, evidence, strategy.value)

    def _map_reduce(self) -> Answer:
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
        return Answer(text, read, evidence_spans(self._plan.ranked, read), Strategy.MAP_REDUCE.value)

    def _read_on(self, last: Answer) -> Answer | None:
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
        return Answer(result.answer, last.passages, last.evidence, AGENT, tools=result)

    def _screened(self, passages: Sequence[Passage]) -> list[Passage]:
        """Screen every passage for injection patterns; flagged ones are defanged and noted on the Run."""
        out: list[Passage] = []
        for p in passages:
            safe, flags = defang(p)
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
        gen = generate(self._chat, messages, self._opts.max_new_tokens)
        trace.usage.spend(gen.prompt_tokens + gen.completion_tokens)
        trace.prompt_tokens += gen.prompt_tokens
        trace.completion_tokens += gen.completion_tokens
        trace.add("generate", strategy=label, prompt_tokens=gen.prompt_tokens,
                  completion_tokens=gen.completion_tokens, seconds=round(gen.seconds, 3),
                  finish_reason=gen.finish_reason)
        return gen.text
