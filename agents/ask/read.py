"""Reading with the corpus tools: the tools of one run, bound to the chat model, and the router's reads
done as planned calls.

A planned passage that covers a whole document is read with ``read_document`` (continued with
``read_span`` where the tool cuts a long document short); any other passage with ``read_span`` in
windows of at most the tool's line limit. The plan executor runs and records every call, and a call
that fails (a document re-indexed since the plan) leaves its passage out. The passages the model then
reads are the planned text itself, screened as the tools screen, in the planned order: chunks split
long lines by characters while the tools read whole lines, so sending what the tools returned would
send more than was planned (1.45x on long prose) and overflow the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from sqlalchemy.orm import Session, sessionmaker

from corral.agents.executor import PlanExecutor
from corral.agents.retrieval import Passage, Searcher
from corral.agents.safety import RunScreen
from corral.agents.tools import CorpusReader, build_tools
from corral.agents.tools.corpus import MAX_SPAN_LINES

__all__ = ["Read", "bind", "corpus_tools", "read_passages"]


def corpus_tools(session_factory: sessionmaker[Session], searcher: Searcher, corpus_id: int,
                 top_k: int, screen: RunScreen | None = None) -> list[BaseTool]:
    """The read-only corpus tools over one corpus; ``search`` returns at most ``top_k`` passages.
    ``screen``: the run's injection screen (default: the pattern stage, recording nothing)."""

    def search(query: str, k: int) -> Sequence[tuple[str, int, int, str]]:
        with session_factory() as s:
            return [(r.chunk.document.path, r.chunk.start_line, r.chunk.end_line, r.chunk.text)
                    for r in searcher.search(s, corpus_id, query, min(k, top_k))]

    return build_tools(CorpusReader(session_factory, corpus_id), search, screen)


def bind(chat: BaseChatModel, tools: Sequence[BaseTool]) -> Runnable[LanguageModelInput, BaseMessage] | None:
    """``chat`` with the tools bound, or None when it cannot call tools."""
    try:
        return chat.bind_tools(tools)
    except NotImplementedError:
        return None


@dataclass(slots=True)
class Read:
    """What the router's reads returned: the passages, and per passage the screening flags raised."""

    passages: list[Passage] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)  # passage label -> patterns found


def read_passages(executor: PlanExecutor, planned: Sequence[Passage], line_counts: Mapping[str, int],
                  *, first_number: int = 1, screen: RunScreen | None = None) -> Read:
    """Read ``planned`` through the executor (inside a turn the caller opened); numbered from
    ``first_number``. Raises ``BudgetExceeded`` when the wall time runs out between calls. ``screen``
    is the run's, the tools' own: the tools' reads are screened by its patterns, and what is sent by
    all of it (a guard model is asked once, about the text the model will read)."""
    guard = screen or RunScreen()
    out = Read()
    for p in planned:
        lines = line_counts.get(p.path, 0)
        with guard.patterns_only():
            if p.start_line == 1 and lines and p.end_line >= lines:
                got = _read_whole(executor, p.path, lines)
            else:
                got = _read_lines(executor, p.path, p.start_line, p.end_line)
        if got is None:
            continue
        text, end, flags = got
        label = f"{p.path}:{p.start_line}-{max(end, p.start_line)}"
        if p.text:  # what was planned is what is sent (see the module's docstring)
            shown = guard.screen(p.text, f"{p.path}:{p.start_line}-{p.end_line}")
            text, end, flags = shown.text, p.end_line, list(shown.flags)
        elif not flags:  # the tools' patterns passed it: the guard stage has not seen it yet
            shown = guard.screen(text, label)
            text, flags = shown.text, list(shown.flags)
        passage = replace(p, number=first_number + len(out.passages), end_line=max(end, p.start_line),
                          text=text)
        out.passages.append(passage)
        if flags:
            out.flags[passage.label] = flags
    return out


def _spans_read(spans: Sequence[Mapping[str, Any]]) -> tuple[str, int, list[str]]:
    text = "".join(str(s.get("text", "")) for s in spans)
    end = max((int(s["end_line"]) for s in spans), default=0)
    return text, end, [f for s in spans for f in s.get("flags", ())]


def _read_whole(executor: PlanExecutor, path: str, lines: int) -> tuple[str, int, list[str]] | None:
    got = executor.call("read_document", {"path": path})
    if not got.ok:
        return None
    text, end, flags = _spans_read(got.spans)
    if end < lines:  # the tool cut a long document short: read the rest by spans
        rest = _read_lines(executor, path, end + 1, lines)
        if rest is not None:
            text, end, flags = text + rest[0], max(end, rest[1]), flags + rest[2]
    return text, end, list(dict.fromkeys(flags))


def _read_lines(executor: PlanExecutor, path: str, start: int, end: int
                ) -> tuple[str, int, list[str]] | None:
    parts: list[str] = []
    flags: list[str] = []
    last = 0
    for a in range(start, end + 1, MAX_SPAN_LINES):
        got = executor.call("read_span", {"path": path, "start_line": a,
                                          "end_line": min(a + MAX_SPAN_LINES - 1, end)})
        if not got.ok:
            break
        text, got_end, got_flags = _spans_read(got.spans)
        parts.append(text)
        flags += got_flags
        last = max(last, got_end)
    return ("".join(parts), last, list(dict.fromkeys(flags))) if parts else None
