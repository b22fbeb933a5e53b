"""Escalating along the router's chain (Self-Route): each strategy's reads are a planned turn of tool
calls and the model answers from them; a "the context cannot answer" verdict first lets the model read
on with the tools, then moves to the next strategy."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import generate as gen
from corral.agents.ask.fit import fit_passages
from corral.agents.ask.images import choose_images, images_wanted, with_images
from corral.agents.ask.plan import Plan, evidence_spans
from corral.agents.ask.read import Read, read_passages
from corral.agents.ask.record import Trace
from corral.agents.backends import EngineChatModel, context_window
from corral.agents.executor import BudgetExceeded, ExecutionResult, PlanExecutor
from corral.agents.retrieval import Passage
from corral.agents.routing import Strategy
from corral.agents.safety import RunScreen
from corral.inference.errors import InferenceError

__all__ = ["AGENT", "Answer", "Escalation"]

AGENT = "agent"  # what a run records when the model's own reading with the tools answered
_MARKERS = re.compile(r"\[\d{1,4}\]|\w\.\w+:L?\d")  # [n] or path:line: the answer cites something


@dataclass(slots=True)
class Answer:
    text: str
    passages: list[Passage]  # what the model was given, numbered
    evidence: list[Passage]
    used: str  # the strategy that answered, or "agent"
    tools: ExecutionResult | None = None  # the model's own reading, when it answered


class Escalation:
    """One routed run's reading and answering, along the plan's chain."""

    def __init__(self, session_factory: sessionmaker[Session], plan: Plan, chat: BaseChatModel,
                 trace: Trace, executor: PlanExecutor, screen: RunScreen | None = None) -> None:
        self._sf = session_factory
        self._screen = screen
        self._plan = plan
        self._chat = chat
        self._trace = trace
        self._ex = executor

    def answer(self) -> Answer:
        """Run the decided strategy, escalating along the fallback chain while the model says the
        context cannot answer; the first such verdict first lets the model read on with the tools."""
        chain = self._plan.chain
        read_on = self._ex.can_run and self._plan.options.self_route_turns > 0
        last: Answer | None = None
        for i, strategy in enumerate(chain):
            try:
                last = self._map_reduce() if strategy is Strategy.MAP_REDUCE else self._single(strategy)
            except BudgetExceeded as exc:
                if last is None:
                    raise
                # The run's budget ends the escalation, not the run: the last answer stands, and the
                # run says why it went no further.
                self._trace.add("note", text=f"did not escalate to {strategy.value}: {exc}")
                self._trace.flags.append(f"escalation to {strategy.value} stopped: {exc}")
                break
            if i + 1 < len(chain) and gen.says_unanswerable(last.text):
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
        plan = self._plan
        with self._sf() as session:
            planned = plan.reads(session, strategy)
        self._ex.turn("router", strategy=strategy.value, reads=len(planned),
                      tokens=sum(p.tokens for p in planned))
        read = self._noted(read_passages(self._ex, planned, plan.line_counts, screen=self._screen))
        passages, messages, room = self._fit(read, lambda ps: gen.answer_messages(ps, plan.question),
                                             strategy.value)
        messages = self._with_images(messages, passages, strategy.value, room)
        text = self._point(messages, self._generate(messages, passages, strategy.value), passages)
        evidence = list(passages) if strategy is Strategy.RETRIEVE else evidence_spans(plan.ranked, passages)
        return Answer(text, passages, evidence, strategy.value)

    def _map_reduce(self) -> Answer:
        plan, trace = self._plan, self._trace
        with self._sf() as session:
            parts, partial = plan.map_parts(session)  # the same parts the plan and the evaluation read
        if partial:
            trace.add("note", text=partial)
            trace.flags.append(partial)
        self._ex.turn("router", strategy=Strategy.MAP_REDUCE.value, parts=len(parts),
                      reads=sum(len(p) for p in parts), tokens=sum(p.tokens for part in parts for p in part))
        notes: list[str] = []
        read: list[Passage] = []
        for part in parts:
            got = self._noted(read_passages(self._ex, part, plan.line_counts, first_number=len(read) + 1,
                                             screen=self._screen))
            got, messages, room = self._fit(got, lambda ps: gen.map_messages(ps, plan.question), "map")
            messages = self._with_images(messages, got, "map", room)
            read += got
            note = self._generate(messages, got, "map")
            if not gen.says_unanswerable(note):
                notes.append(note)
        if not notes:
            text = "The collection does not contain the answer (no part had relevant facts)."
        elif len(notes) == 1:
            text = notes[0]
        else:
            text = self._generate(gen.reduce_messages(notes, plan.question), (), "reduce")
        return Answer(text, read, evidence_spans(plan.ranked, read), Strategy.MAP_REDUCE.value)

    def _read_on(self, last: Answer) -> Answer | None:
        """Self-Route with tools: the model reads on for a few turns, leaving the budget room to
        escalate (a read turn and an answer) if it finds nothing."""
        usage = self._trace.usage
        turns = min(self._plan.options.self_route_turns, usage.budget.max_steps - usage.steps - 2)
        if turns < 2:  # a tool turn and an answer turn at least
            self._trace.add("note", text="no steps left for the model to read on with the tools")
            return None
        self._trace.add("read-on", source=last.used, turns=turns,
                        why="the model said the context cannot answer: it reads on with the corpus tools")
        seen = ", ".join(p.label for p in last.passages[:30])
        context = (f"Already read without finding the answer: {seen or 'nothing'}. Use the tools to read "
                   "elsewhere, then answer citing path:start-end.")
        try:
            result = self._ex.run(self._plan.question, context=context, max_turns=turns)
        except InferenceError as exc:  # e.g. the conversation outgrew the window: escalate instead
            self._trace.add("note", text=f"reading on with the tools failed: {exc}")
            return None
        self._trace.spend(result.prompt_tokens, result.completion_tokens)
        if result.stopped != "answered" or gen.says_unanswerable(result.answer):
            return None
        return Answer(result.answer, last.passages, last.evidence, AGENT, tools=result)

    def _noted(self, read: Read) -> list[Passage]:
        """The passages read; the injections the tools defanged in them are noted on the Run."""
        for label, flags in read.flags.items():
            self._trace.flags.append(f"{label}: possible prompt injection ({', '.join(flags)}), defanged")
            self._trace.add("screen", label=label, flags=flags)
            self._trace.decide("screened", label, f"possible prompt injection ({', '.join(flags)})")  # once
        return read.passages

    def _fit(self, passages: list[Passage], build: Callable[[Sequence[Passage]], list[dict[str, str]]],
             label: str) -> tuple[list[Passage], list[dict[str, str]], int]:
        """The passages and messages trimmed to what the window holds beside the answer, measured as
        the model will see them, and the tokens of the window left over; a trim is recorded on the run
        (what was left out, and why)."""
        o = self._plan.options
        room = context_window(self._chat) - o.max_new_tokens
        # Images sent beside OCR'd passages need room too: as many as may go keep theirs, but never
        # more than a quarter of the window (the text read is the answer's ground; images add to it).
        images = images_wanted(passages, o.vision_max_images) if self._vision else 0
        limit = room - min(images * o.vision_image_tokens, room // 4)
        fitted = fit_passages(self._chat, passages, build, limit)
        if fitted.trimmed:
            self._trace.add("trim", strategy=label, prompt_tokens=fitted.tokens, limit=limit,
                            planned_tokens=fitted.planned_tokens, dropped=fitted.dropped, cut=fitted.cut,
                            why="the rendered prompt did not fit the window beside the answer")
        return fitted.passages, fitted.messages, room - fitted.tokens

    @property
    def _vision(self) -> bool:
        """Whether images go with OCR'd passages: declared for a remote backend, never the engine."""
        return self._plan.options.vision and not isinstance(self._chat, EngineChatModel)

    def _with_images(self, messages: list[dict[str, Any]], passages: Sequence[Passage], label: str,
                     room: int) -> list[dict[str, Any]]:
        """``messages`` with the stored images of the OCR'd ``passages`` beside the question, for a
        vision backend: within the caps, and as many as the ``room`` left in the window holds;
        recorded on the run as an ``images`` step."""
        if not self._vision or not any(p.image_ref is not None for p in passages):
            return messages
        o = self._plan.options
        fit = max(room, 0) // o.vision_image_tokens if o.vision_image_tokens else o.vision_max_images
        with self._sf() as session:
            chosen = choose_images(session, self._plan.corpus_id, passages,
                                   max_images=min(o.vision_max_images, fit), max_bytes=o.vision_max_bytes)
        self._trace.add("images", strategy=label, sent=len(chosen.pictures), bytes=chosen.bytes, room=room,
                        refs=[f"{p.path}#{p.ref}" for p in chosen.pictures], left_out=chosen.left_out[:20])
        return with_images(messages, chosen.pictures)

    def _point(self, messages: list[dict[str, Any]], text: str, passages: Sequence[Passage]) -> str:
        """``text``, with the sources the model points at appended as ``[n]`` when it cited none: small
        models answer right and forget the format. Asked after the fact (one short call over the
        cached prompt); what they point at is still checked against the claim like any citation."""
        if not passages or _MARKERS.search(text) or gen.says_unanswerable(text):
            return text
        try:
            reply = self._generate(gen.point_messages(messages, text), (), "point", max_new=12)
        except (InferenceError, BudgetExceeded) as exc:  # a courtesy: the answer stands without it
            self._trace.add("note", text=f"asking the model which sources it used failed: {exc}")
            return text
        numbers = gen.pointed_numbers(reply, {p.number for p in passages})
        self._trace.add("point", numbers=numbers, reply=reply[:80])
        return f"{text} {''.join(f'[{n}]' for n in numbers)}" if numbers else text

    def _generate(self, messages: list[dict[str, Any]], passages: Sequence[Passage], label: str,
                  *, max_new: int | None = None) -> str:
        trace = self._trace
        max_new = max_new or self._plan.options.max_new_tokens
        # Stop before a call that would overspend: its prompt is at least the sources it carries.
        trace.usage.check(upcoming_tokens=sum(p.tokens for p in passages) + max_new)
        call = label if label in ("map", "reduce", "point") else "answer"
        reply = gen.generate(self._chat, messages, max_new, callbacks=trace.progress.callbacks(call))
        trace.usage.spend(reply.prompt_tokens + reply.completion_tokens)
        trace.spend(reply.prompt_tokens, reply.completion_tokens)
        trace.add("generate", strategy=label, prompt_tokens=reply.prompt_tokens,
                  completion_tokens=reply.completion_tokens, seconds=round(reply.seconds, 3),
                  finish_reason=reply.finish_reason)
        return reply.text
