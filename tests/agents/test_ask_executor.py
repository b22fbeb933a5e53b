"""A plain ``ask`` reads through the plan executor: the router's reads are tool calls on the Run, within
the budget, and Self-Route lets the model read on with the tools before escalating.

A scripted chat model says "the context cannot answer" and then misbehaves on cue; everything else is
real: the database, the router, the tools and the executor (search is ``WordSearcher``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from sqlalchemy import select

from corral.agents.ask import AskOptions, AskResult, ask
from corral.agents.executor import Budget
from corral.core.db import Run
from tests.agents.scripted import Corpora, ScriptedChat, WordSearcher, call, calls, scripted
from tests.agents.test_ask import big_files

QUESTION = "What is the launch code for project Falcon?"
UNANSWERABLE = "The sources do not contain the answer."

Ask = Callable[..., AskResult]


@pytest.fixture
def ask_big(corpora: Corpora) -> Ask:
    corpora.add("big", big_files())

    def run(chat: ScriptedChat, budget: Budget | None = None) -> AskResult:
        return ask(corpora.sessions, "big", QUESTION, chat=chat, searcher=WordSearcher(),
                   options=AskOptions(max_new_tokens=32, budget=budget or Budget()))

    return run


def model_steps(steps: Sequence[dict[str, Any]]) -> int:
    """Steps the budget counts: planned read turns, answers and the model's tool turns."""
    return sum(s["step"] in ("read", "generate", "model") for s in steps)


def stored(corpora: Corpora, run_id: str) -> Run:
    with corpora.sessions() as s:
        return s.get_one(Run, run_id)


def test_the_router_reads_with_tool_calls_recorded_on_the_run(ask_big: Ask, corpora: Corpora) -> None:
    chat = scripted("The launch code is 7-alpha-9 [1].")
    r = ask_big(chat)
    assert r.strategy == r.routed_strategy and r.strategy in ("scoped-stuff", "retrieve")
    turn = next(s for s in r.steps if s["step"] == "read")
    assert turn["by"] == "router" and turn["strategy"] == r.strategy and turn["reads"] >= 1
    reads = [s for s in r.steps if s["step"] == "tool"]
    assert reads and all(s["by"] == "router" and s["ok"] for s in reads)
    assert {s["name"] for s in reads} <= {"read_document", "read_span"}
    assert r.citations[0].cited_by_model and r.citations[0].verified
    run = stored(corpora, r.run_id)
    assert run.steps == r.steps and run.answer == r.answer and run.error is None and run.model == "scripted"
    assert run.actual_tokens == r.prompt_tokens + r.completion_tokens > 0
    assert model_steps(r.steps) <= Budget().max_steps
    # One answer call, asked for at most max_new_tokens; the needle was in what the model read.
    assert chat.answers == 1 and chat.seen[0][1]["max_tokens"] == 32
    assert "7-alpha-9" in chat.seen[0][0][-1].text


def test_self_route_reads_on_with_the_tools_and_cites_what_it_found(ask_big: Ask, corpora: Corpora) -> None:
    chat = scripted(
        UNANSWERABLE,
        calls(call("read_span", 1, path="big/zz_needle.txt", start_line=-3, end_line=1),
              call("grep", 2, pattern="launch code for project")),
        "The launch code is 7-alpha-9 (big/zz_needle.txt:1-1).",
    )
    r = ask_big(chat)
    assert r.strategy == "agent" and r.routed_strategy in ("scoped-stuff", "retrieve")
    assert "read on with the corpus tools" in r.reason
    names = [s["step"] for s in r.steps]
    assert names.index("read") < names.index("generate") < names.index("read-on") < names.index("model")
    model_tools = [s for s in r.steps if s["step"] == "tool" and "by" not in s]
    # The invalid call went back to the model as an error; the grep ran.
    assert [(s["name"], s["ok"]) for s in model_tools] == [("read_span", False), ("grep", True)]
    assert "escalate" not in names
    cited = [c for c in r.citations if c.cited_by_model]
    assert cited and cited[0].label == "big/zz_needle.txt:1-1" and cited[0].verified
    run = stored(corpora, r.run_id)
    assert run.strategy == "agent" and run.steps == r.steps and run.answer == r.answer
    assert model_steps(r.steps) <= Budget().max_steps


def test_a_looping_model_is_stopped_and_the_run_escalates(ask_big: Ask, corpora: Corpora) -> None:
    loop = calls(call("list_documents", 1))
    chat = scripted(UNANSWERABLE, loop, loop, loop, "Project Falcon: 7-alpha-9 [1].")
    r = ask_big(chat)
    stop = next(s for s in r.steps if s["step"] == "stop")
    assert stop["reason"] == "loop" and "repeated the same call" in stop["detail"]
    escalate = next(s for s in r.steps if s["step"] == "escalate")
    assert escalate["source"] == r.routed_strategy and r.strategy == escalate["to"] != "agent"
    assert "7-alpha-9" in r.answer and model_steps(r.steps) <= Budget().max_steps
    assert stored(corpora, r.run_id).error is None


def test_reading_on_never_takes_the_steps_escalation_needs(ask_big: Ask, corpora: Corpora) -> None:
    chat = scripted(UNANSWERABLE, calls(call("list_documents", 1)))
    r = ask_big(chat, Budget(max_steps=4))
    # The budget ends the escalation, not the run: the last answer stands and says why it stopped.
    assert r.answer == UNANSWERABLE and r.support == "not-found"
    assert any("step budget" in f and "escalation to" in f for f in r.flags)
    with corpora.sessions() as s:
        run = s.scalars(select(Run)).one()
        names = [step["step"] for step in run.steps]
        assert "read-on" not in names and "model" not in names  # no room: it went straight to escalating
        assert any(step["step"] == "note" and "no steps left" in step["text"] for step in run.steps)
        assert any(step["step"] == "note" and "did not escalate" in step["text"] for step in run.steps)
        assert model_steps(run.steps) <= 4


def test_a_backend_that_cannot_call_tools_escalates(ask_big: Ask) -> None:
    r = ask_big(scripted(UNANSWERABLE, "7-alpha-9 [1].", tool_calling=False))
    names = [s["step"] for s in r.steps]
    assert "read-on" not in names and "escalate" in names and r.strategy != r.routed_strategy


def test_the_token_budget_stops_a_call_that_would_overspend(ask_big: Ask, corpora: Corpora) -> None:
    # The budget also bounds one answer's context; escalating would read as much again, so the call
    # is not made: the first answer stands, with the reason it went no further.
    r = ask_big(scripted(UNANSWERABLE, tool_calling=False), Budget(max_tokens=600))
    assert r.answer == UNANSWERABLE and r.prompt_tokens + r.completion_tokens <= 600
    assert any("token budget" in f for f in r.flags)
    with corpora.sessions() as s:
        run = s.scalars(select(Run)).one()
        assert run.error is None and run.answer == UNANSWERABLE


def test_a_backend_without_a_prefix_cache_uses_the_declared_setting(corpora: Corpora) -> None:
    corpora.add("kb", {"kb/a.md": "# A\n\nThe launch code for project Falcon is 7-alpha-9.\n"})
    r = ask(corpora.sessions, "kb", QUESTION, chat=scripted("7-alpha-9 [1]."), searcher=WordSearcher(),
            options=AskOptions(max_new_tokens=32, prefix_cached=True))
    assert r.decision["inputs"]["prefix_cached"] is True
    assert r.decision["inputs"]["prefix_cached_tokens"] is None


class ToolTurnsFail(ScriptedChat):
    """Answers from the script, but its tool-calling turns fail as a remote server's would."""

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        if "tools" in kwargs:
            raise ConnectionError("connection refused")
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_a_backend_failing_while_reading_on_escalates_instead(ask_big: Ask) -> None:
    chat = ToolTurnsFail(script=[AIMessage(UNANSWERABLE), AIMessage("7-alpha-9 [1].")],
                         profile={"max_input_tokens": 2048})
    r = ask_big(chat)
    note = next(s for s in r.steps if s["step"] == "note" and "reading on" in s["text"])
    assert "the chat backend failed: connection refused" in note["text"]
    assert r.strategy != r.routed_strategy and r.strategy != "agent" and "7-alpha-9" in r.answer
