"""Evidence recall against tokens read, per strategy and for the router.

*Evidence recall* asks whether the gold evidence is in what the model is sent — it needs no model, so
every strategy is measured on the real code path with the real embedder and index: planned by
``make_plan`` (``Plan.reads``, ``Plan.map_parts``: map-reduce within the same ``max_map_calls`` cap as
``ask``), read through the corpus tools by ``read_passages``, and fitted into the window beside the
answer by ``fit_passages`` (counted with the given tokenizer when no model is given) — the functions
``ask`` sends with. Only the Self-Route escalation needs a model: pass one and the router's row also
counts the escalations the model triggers (and their tokens).
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import BaseTool
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.ask import generate as gen
from corral.agents.ask.fit import fit_passages
from corral.agents.ask.options import AskOptions
from corral.agents.ask.plan import Plan, line_counts, make_plan
from corral.agents.ask.read import corpus_tools, read_passages
from corral.agents.eval.tasks import EvalTask
from corral.agents.executor import Budget, PlanExecutor
from corral.agents.retrieval import Passage, Searcher
from corral.agents.routing import Strategy, context_budget
from corral.core.db import Corpus
from corral.core.services import get_corpus

__all__ = ["EvalReport", "TaskOutcome", "evaluate", "evidence_recall"]

ROUTER = "router"
_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def evidence_recall(evidence: Sequence[tuple[str, str]], passages: Sequence[Passage]) -> float:
    """Share of ``(path, text)`` evidence items wholly inside a passage read from that document.

    Paths match exactly or as a suffix (``doc1.txt`` matches ``corpus/doc1.txt``).
    """
    if not evidence:
        return 1.0
    by_path: dict[str, list[str]] = defaultdict(list)
    for p in passages:
        by_path[p.path].append(_norm(p.text))
    found = 0
    for path, text in evidence:
        want = _norm(text)
        texts = [t for doc, ts in by_path.items() if doc == path or doc.endswith("/" + path) for t in ts]
        found += any(want in t for t in texts)
    return found / len(evidence)


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    task: str
    kind: str
    strategy: str  # a strategy name, or "router"
    recall: float
    tokens: int
    chosen: str | None = None  # for the router: what it read (after escalation)


@dataclass(slots=True)
class EvalReport:
    corpus_tokens: int
    window: int
    hybrid: bool
    outcomes: list[TaskOutcome] = field(default_factory=list)

    def summary(self) -> list[dict[str, object]]:
        """One row per (kind, strategy): mean evidence recall and mean tokens read."""
        groups: dict[tuple[str, str], list[TaskOutcome]] = defaultdict(list)
        for o in self.outcomes:
            groups[(o.kind, o.strategy)].append(o)
        rows: list[dict[str, object]] = []
        for (kind, strategy), items in sorted(groups.items()):
            row: dict[str, object] = {
                "kind": kind, "strategy": strategy, "tasks": len(items),
                "recall": round(statistics.fmean(o.recall for o in items), 3),
                "tokens": round(statistics.fmean(o.tokens for o in items)),
            }
            if strategy == ROUTER:
                counts: dict[str, int] = defaultdict(int)
                for o in items:
                    counts[o.chosen or "?"] += 1
                row["chosen"] = dict(counts)
            rows.append(row)
        return rows

    def markdown(self) -> str:
        rows = self.summary()
        stuff = {r["kind"]: r for r in rows if r["strategy"] == Strategy.STUFF.value}
        out = ["| kind | strategy | tasks | evidence recall | tokens read | vs stuff tokens | router chose |",
               "|---|---|---|---|---|---|---|"]
        for r in rows:
            base = stuff.get(r["kind"])
            ratio = (f"{int(r['tokens']) / int(base['tokens']):.2f}x"  # type: ignore[call-overload]
                     if base and base["tokens"] else "")
            chosen = ", ".join(f"{k} {v}" for k, v in r.get("chosen", {}).items())  # type: ignore[attr-defined]
            out.append(f"| {r['kind']} | {r['strategy']} | {r['tasks']} | {r['recall']:.3f} | "
                       f"{r['tokens']:,} | {ratio} | {chosen} |")
        return "\n".join(out)


def evaluate(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    tasks: Sequence[EvalTask],
    *,
    searcher: Searcher,
    window: int,
    count_tokens: Callable[[str], int],
    options: AskOptions,
    strategies: Sequence[Strategy] = tuple(Strategy),
    model: BaseChatModel | None = None,
) -> EvalReport:
    """Measure every strategy in ``strategies`` and the router on ``tasks`` over the corpus."""
    with session_factory() as session:
        corpus = get_corpus(session, corpus_name)
        report = EvalReport(corpus.token_count, window, searcher.hybrid)
        lines = line_counts(session, corpus.id)
        # The tools ask reads with, run by a model-less executor with room for every planned call.
        tools = corpus_tools(session_factory, searcher, corpus.id, options.top_k)
        counter = model if model is not None else _TokenCounter(count=count_tokens)
        for task in tasks:
            report.outcomes += _one(session, corpus, task, searcher=searcher, window=window,
                                    count_tokens=count_tokens, options=options, strategies=strategies,
                                    model=model, sender=_Sender(tools, lines, counter,
                                                                window - options.max_new_tokens))
    return report


class _TokenCounter(BaseChatModel):
    """Counts a prompt's tokens with the evaluation's tokenizer (as a remote backend's prompts are
    measured); it answers nothing."""

    count: Callable[[str], int]

    @property
    def _llm_type(self) -> str:
        return "token-counter"

    def get_num_tokens(self, text: str) -> int:
        return self.count(text)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("the evaluation measures prompts; it has no model to answer them")


@dataclass(slots=True)
class _Sender:
    """What ``ask`` sends for a strategy of a plan: the planned parts read through the corpus tools
    (``read_passages``), each fitted into the window beside the answer (``fit_passages``)."""

    tools: Sequence[BaseTool]
    line_counts: dict[str, int]
    counter: BaseChatModel
    limit: int  # prompt tokens: the window less the answer

    def send(self, session: Session, plan: Plan, strategy: Strategy) -> list[Passage]:
        executor = PlanExecutor(None, self.tools, Budget(max_steps=1 << 30, max_tokens=1 << 60,
                                                         max_seconds=float("inf")))
        plan.line_counts = self.line_counts
        if strategy is Strategy.MAP_REDUCE:
            parts = plan.map_parts(session)[0]

            def build(ps: Sequence[Passage]) -> list[dict[str, str]]:
                return gen.map_messages(ps, plan.question)
        else:
            parts = [plan.reads(session, strategy)]

            def build(ps: Sequence[Passage]) -> list[dict[str, str]]:
                return gen.answer_messages(ps, plan.question)
        sent: list[Passage] = []
        for part in parts:
            got = read_passages(executor, part, self.line_counts, first_number=len(sent) + 1).passages
            sent += fit_passages(self.counter, got, build, self.limit).passages
        return sent


def _one(
    session: Session, corpus: Corpus, task: EvalTask, *, searcher: Searcher, window: int,
    count_tokens: Callable[[str], int], options: AskOptions, strategies: Sequence[Strategy],
    model: BaseChatModel | None, sender: _Sender,
) -> list[TaskOutcome]:
    q_tokens = count_tokens(task.question)
    budget = context_budget(window, q_tokens, options.max_new_tokens, gen.PROMPT_OVERHEAD)
    plan = make_plan(session, corpus, task.question, budget=budget, window=window, question_tokens=q_tokens,
                     searcher=searcher, options=options)
    sent: dict[Strategy, list[Passage]] = {}

    def reading(s: Strategy) -> list[Passage]:
        if s not in sent:
            sent[s] = sender.send(session, plan, s)
        return sent[s]

    out = [TaskOutcome(task.id, task.kind, s.value, evidence_recall(task.evidence, reading(s)),
                       sum(p.tokens for p in reading(s))) for s in strategies]
    tokens = 0
    chosen = plan.chain[0]
    for i, s in enumerate(plan.chain):
        chosen = s
        ps = reading(s)
        tokens += sum(p.tokens for p in ps)
        if model is None or i + 1 == len(plan.chain) or s is Strategy.MAP_REDUCE:
            break
        reply = gen.generate(model, gen.answer_messages(ps, task.question), options.max_new_tokens)
        if not gen.says_unanswerable(reply.text):
            break
    out.append(TaskOutcome(task.id, task.kind, ROUTER, evidence_recall(task.evidence, reading(chosen)),
                           tokens, chosen.value))
    return out
