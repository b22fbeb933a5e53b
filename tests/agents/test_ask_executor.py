"""A plain ``ask`` reads through the plan executor: the router's reads are tool calls on the Run, within
the budget, and Self-Route lets the model read on with the tools before escalating.

The Self-Route tests need a model that says "the context cannot answer" and then misbehaves on cue, so
they script langchain-core's ``GenericFakeChatModel`` (behind our real ``LangChainChatModel`` adapter
for answers, with tools "bound" for the reading-on turns); everything else is real: the database, the
vector and keyword indexes, the router, the tools and the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from corral.agents.ask import AskOptions, AskResult, ask
from corral.agents.backends import LangChainChatModel
from corral.agents.executor import Budget
from corral.core.db import Run, get_sessionmaker, session_scope
from corral.core.errors import ModelError
from corral.ingestion.tokens import get_token_counter
from corral.platform.composition import get_searcher
from tests.agents.conftest import LoadCorpus
from tests.agents.test_ask import big_files

QUESTION = "What is the launch code for project Falcon?"


class ToolScript(GenericFakeChatModel):
    """The scripted chat model, accepting tools as a tool-calling backend does (its replies are fixed)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, BaseMessage]:
        return self


def replies(*items: str | AIMessage) -> Iterator[AIMessage]:
    """The items in order, then the last one forever."""
    msgs = [m if isinstance(m, AIMessage) else AIMessage(m) for m in items]
    yield from msgs
    while True:
        yield msgs[-1]


def call(name: str, n: int, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"m{n}", "type": "tool_call"}


def answer_model(*texts: str) -> LangChainChatModel:
    counter = get_token_counter()
    return LangChainChatModel(GenericFakeChatModel(messages=replies(*texts)), name="scripted",
                              context_window=2048, count_tokens=lambda t: counter.count([t])[0])


Ask = Callable[..., AskResult]


@pytest.fixture
def ask_big(load_corpus: LoadCorpus) -> Ask:
    load_corpus("big", big_files())

    def run(model: LangChainChatModel, tools: BaseChatModel | None,
            budget: Budget | None = None) -> AskResult:
        return ask(get_sessionmaker(), "big", QUESTION, model=model, searcher=get_searcher(),
                   options=AskOptions(max_new_tokens=32, budget=budget or Budget()), tool_chat=tools)

    return run


def model_steps(steps: Sequence[dict[str, Any]]) -> int:
    """Steps the budget counts: planned read turns, answers and the model's tool turns."""
    return sum(s["step"] in ("read", "generate", "model") for s in steps)


def test_the_router_reads_with_tool_calls_recorded_on_the_run(ask_big: Ask) -> None:
    r = ask_big(answer_model("The launch code is 7-alpha-9 [1]."), None)
    assert r.strategy == r.routed_strategy and r.strategy in ("scoped-stuff", "retrieve")
    turn = next(s for s in r.steps if s["step"] == "read")
    assert turn["by"] == "router" and turn["strategy"] == r.strategy and turn["reads"] >= 1
    reads = [s for s in r.steps if s["step"] == "tool"]
    assert reads and all(s["by"] == "router" and s["ok"] for s in reads)
    assert {s["name"] for s in reads} <= {"read_document", "read_span"}
    assert r.citations[0].cited_by_model and r.citations[0].verified
    with session_scope() as s:
        run = s.get_one(Run, r.run_id)
        assert run.steps == r.steps and run.answer == r.answer and run.error is None
        assert run.actual_tokens == r.prompt_tokens + r.completion_tokens > 0
    assert model_steps(r.steps) <= Budget().max_steps


def test_self_route_reads_on_with_the_tools_and_cites_what_it_found(ask_big: Ask) -> None:
    tools = ToolScript(messages=replies(
        AIMessage("", tool_calls=[call("read_span", 1, path="big/zz_needle.txt", start_line=-3, end_line=1),
                                  call("grep", 2, pattern="launch code for project")]),
        AIMessage("The launch code is 7-alpha-9 (big/zz_needle.txt:1-1)."),
    ))
    r = ask_big(answer_model("The sources do not contain the answer."), tools)
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
    with session_scope() as s:
        run = s.get_one(Run, r.run_id)
        assert run.strategy == "agent" and run.steps == r.steps and run.answer == r.answer
    assert model_steps(r.steps) <= Budget().max_steps


def test_a_looping_model_is_stopped_and_the_run_escalates(ask_big: Ask) -> None:
    tools = ToolScript(messages=replies(AIMessage("", tool_calls=[call("list_documents", 1)])))
    r = ask_big(answer_model("The sources do not contain the answer.", "Project Falcon: 7-alpha-9 [1]."),
                tools)
    stop = next(s for s in r.steps if s["step"] == "stop")
    assert stop["reason"] == "loop" and "repeated the same call" in stop["detail"]
    escalate = next(s for s in r.steps if s["step"] == "escalate")
    assert escalate["source"] == r.routed_strategy and r.strategy == escalate["to"] != "agent"
    assert "7-alpha-9" in r.answer and model_steps(r.steps) <= Budget().max_steps
    with session_scope() as s:
        assert s.get_one(Run, r.run_id).error is None


def test_reading_on_never_takes_the_steps_escalation_needs(ask_big: Ask) -> None:
    tools = ToolScript(messages=replies(AIMessage("", tool_calls=[call("list_documents", 1)])))
    with pytest.raises(ModelError, match="step budget"):
        ask_big(answer_model("The sources do not contain the answer."), tools, Budget(max_steps=4))
    with session_scope() as s:
        run = s.query(Run).one()
        assert run.error and "step budget" in run.error
        names = [step["step"] for step in run.steps]
        assert "read-on" not in names and "model" not in names  # no room: it went straight to escalating
        assert any(step["step"] == "note" and "no steps left" in step["text"] for step in run.steps)
        assert model_steps(run.steps) <= 4


def test_a_backend_that_cannot_call_tools_escalates_as_before(ask_big: Ask) -> None:
    no_tools = GenericFakeChatModel(messages=replies("unused"))  # bind_tools is not implemented
    r = ask_big(answer_model("The sources do not contain the answer.", "7-alpha-9 [1]."), no_tools)
    names = [s["step"] for s in r.steps]
    assert "read-on" not in names and "escalate" in names and r.strategy != r.routed_strategy


def test_a_backend_without_a_prefix_cache_uses_the_declared_setting(load_corpus: LoadCorpus) -> None:
    load_corpus("kb", {"kb/a.md": "# A\n\nThe launch code for project Falcon is 7-alpha-9.\n"})
    model = answer_model("7-alpha-9 [1].")  # a remote-style backend: no prefix cache to ask
    r = ask(get_sessionmaker(), "kb", QUESTION, model=model, searcher=get_searcher(),
            options=AskOptions(max_new_tokens=32, prefix_cached=True))
    assert r.decision["inputs"]["prefix_cached"] is True
    assert r.decision["inputs"]["prefix_cached_tokens"] is None
