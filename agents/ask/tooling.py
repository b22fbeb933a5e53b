"""The corpus tools for one run, bound to a chat backend, and how their reads become cited sources.

Shared by ``ask`` (the router's reads, and the model's own reading when Self-Route escalates) and
``ask_agent`` (the model reads from the start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.citations import Citation, verify_answer
from corral.agents.executor import ExecutionResult
from corral.agents.retrieval import Passage, Searcher
from corral.agents.tools import CorpusReader, build_tools

__all__ = ["TOOL_OUTPUT", "bind", "corpus_tools", "span_passages", "verify_tool_answer"]

TOOL_OUTPUT = "(tool output)"  # the pseudo-source quotes are checked against


def corpus_tools(session_factory: sessionmaker[Session], searcher: Searcher, corpus_id: int,
                 top_k: int) -> list[BaseTool]:
    """The read-only corpus tools over one corpus; ``search`` returns at most ``top_k`` passages."""

    def search(query: str, k: int) -> Sequence[tuple[str, int, int, str]]:
        with session_factory() as s:
            return [(r.chunk.document.path, r.chunk.start_line, r.chunk.end_line, r.chunk.text)
                    for r in searcher.search(s, corpus_id, query, min(k, top_k))]

    return build_tools(CorpusReader(session_factory, corpus_id), search)


def bind(chat: BaseChatModel | None, tools: Sequence[BaseTool]
         ) -> Runnable[LanguageModelInput, BaseMessage] | None:
    """``chat`` with the tools bound, or None when there is no chat model or it cannot call tools."""
    if chat is None:
        return None
    try:
        return chat.bind_tools(tools)
    except NotImplementedError:
        return None


def span_passages(spans: Sequence[Mapping[str, Any]], first_number: int = 1) -> list[Passage]:
    """The spans tools read, as numbered passages (text where the tool returned it)."""
    return [Passage(n, sp["path"], sp["start_line"], sp["end_line"], str(sp.get("text", "")), 0)
            for n, sp in enumerate(spans, start=first_number)]


def verify_tool_answer(
    answer: str, result: ExecutionResult, line_counts: Mapping[str, int], *,
    read_before: Sequence[Passage] = (), evidence_before: Sequence[Passage] = (),
) -> tuple[list[Citation], list[str]]:
    """Citations of an answer written after reading with tools, and the flags of those unverified.

    Sources are what was read before (``read_before``), the spans the tools read, and — for quotes —
    everything the tools returned as one pseudo-source; evidence is ``evidence_before`` then the first
    spans the tools read.
    """
    read = span_passages(result.spans, len(read_before) + 1)
    sources = [*read_before, *read, Passage(0, TOOL_OUTPUT, 0, 0, "\n".join(result.tool_text), 0)]
    check = verify_answer(answer, sources, line_counts, evidence=[*evidence_before, *read[:5]])
    return [c for c in check.citations if c.path != TOOL_OUTPUT], check.unverified
