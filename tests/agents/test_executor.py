"""The plan executor: tool calls run within budgets, every step recorded, failures end cleanly.

The control-flow tests (loops, invalid arguments, unknown tools, budgets) drive the executor with
langchain-core's ``GenericFakeChatModel`` replaying scripted replies: they test the executor's
decisions, which need a model that misbehaves on cue. The last test uses the real tiny model behind
``EngineChatModel``, whose tool calls come out of grammar-constrained decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from corral.agents.executor import Budget, PlanExecutor
from corral.agents.tools import CorpusReader, build_tools
from tests.agents.scripted import Corpora

FILES = {"kb/falcon.md": "# Falcon\n\nThe launch code for project Falcon is 7-alpha-9.\n",
         "kb/other.md": "# Other\n\nNothing to see here.\n"}


def call(name: str, n: int = 0, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"c{n}", "type": "tool_call"}


def scripted(*replies: AIMessage) -> GenericFakeChatModel:
    def forever() -> Iterator[AIMessage]:
        yield from replies
        while True:
            yield replies[-1]
    return GenericFakeChatModel(messages=forever())


@pytest.fixture
def tools(corpora: Corpora) -> list[Any]:
    return build_tools(CorpusReader(corpora.sessions, corpora.add("kb", FILES)))


def test_reads_then_answers_and_records_every_step(tools: list[Any]) -> None:
    model = scripted(
        AIMessage("", tool_calls=[call("grep", 1, pattern="launch code")]),
        AIMessage("", tool_calls=[call("read_span", 2, path="kb/falcon.md", start_line=1, end_line=3)]),
        AIMessage("The code is 7-alpha-9 (kb/falcon.md:3-3)."),
    )
    r = PlanExecutor(model, tools, Budget(max_steps=10)).run("What is Falcon's launch code?")
    assert r.stopped == "answered" and "7-alpha-9" in r.answer
    assert [s.kind for s in r.steps] == ["model", "tool", "model", "tool", "model"]
    assert {"path": "kb/falcon.md", "start_line": 3, "end_line": 3} in r.spans
    assert all(s.details["ok"] for s in r.steps if s.kind == "tool")


def test_a_model_that_loops_is_stopped_with_the_reason(tools: list[Any]) -> None:
    model = scripted(AIMessage("", tool_calls=[call("list_documents", 1)]))
    r = PlanExecutor(model, tools, Budget(max_steps=50)).run("anything?")
    assert r.stopped == "loop" and "repeated the same call" in r.steps[-1].details["detail"]
    assert len([s for s in r.steps if s.kind == "model"]) == 3  # one real call, two refusals
    assert "stopped before finishing" in r.answer


def test_invalid_arguments_and_unknown_tools_go_back_to_the_model(tools: list[Any]) -> None:
    model = scripted(
        AIMessage("", tool_calls=[call("read_span", 1, path="kb/falcon.md", start_line=-3),
                                  call("rm_rf", 2, path="/"),
                                  call("read_span", 3, path="../../etc/passwd", start_line=1, end_line=2)]),
        AIMessage("I could not read it."),
    )
    r = PlanExecutor(model, tools, Budget()).run("q")
    errors = [s for s in r.steps if s.kind == "tool"]
    assert [s.details["ok"] for s in errors] == [False, False, False]
    assert errors[1].details["error"] == "unknown tool" and "no document" in errors[2].details["error"]
    assert r.stopped == "answered" and r.spans == []


def test_budgets_end_the_run(tools: list[Any]) -> None:
    replies = [AIMessage("", tool_calls=[call("read_span", i, path="kb/falcon.md", start_line=1, end_line=i)])
               for i in range(1, 30)]
    r = PlanExecutor(scripted(*replies), tools, Budget(max_steps=4)).run("q")
    assert r.stopped == "budget" and "step budget" in r.steps[-1].details["detail"]
    r2 = PlanExecutor(scripted(*replies), tools, Budget(max_seconds=0.0)).run("q")
    assert r2.stopped == "budget" and "time budget" in r2.steps[-1].details["detail"]


@pytest.mark.timeout(300)
def test_the_tiny_model_emits_well_formed_calls_under_constrained_decoding(
    tools: list[Any], tiny_chat_model: Path
) -> None:
    from corral.agents.backends import EngineChatModel
    from corral.inference.hf import HFChatModel

    engine = EngineChatModel.over(HFChatModel(tiny_chat_model), max_tokens=48)
    bound = engine.bind_tools(tools, tool_choice="required")
    r = PlanExecutor(bound, tools, Budget(max_steps=3)).run("What is Falcon's launch code?")
    calls = [c for s in r.steps if s.kind == "model" for c in s.details["tool_calls"]]
    # A random model knows nothing, but every call it makes names a real tool with valid JSON args.
    assert calls and all(c["name"] in {t.name for t in tools} for c in calls)
    assert r.stopped in ("budget", "loop") and r.prompt_tokens > 0
