"""The router's reading, done with the corpus tools: what a strategy would read becomes planned calls.

A planned passage that covers a whole document is read with ``read_document`` (continued with
``read_span`` where the tool cuts a long document short); any other passage with ``read_span`` in
windows of at most the tool's line limit. The plan executor runs and records every call; the passages
the model then reads are the text those calls returned (their raw artifacts), in the planned order,
with the planned token counts, scores and pages. A call that fails (a document re-indexed since the
plan) is recorded and its passage left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.agents.executor import PlanExecutor
from corral.agents.retrieval import Passage
from corral.agents.tools.corpus import MAX_SPAN_LINES

__all__ = ["read_passages"]


def read_passages(executor: PlanExecutor, planned: Sequence[Passage], line_counts: Mapping[str, int],
                  *, first_number: int = 1) -> list[Passage]:
    """Read ``planned`` through the executor (inside a turn the caller opened); numbered from
    ``first_number``. Raises ``BudgetExceeded`` when the wall time runs out between calls."""
    out: list[Passage] = []
    for p in planned:
        lines = line_counts.get(p.path, 0)
        if p.start_line == 1 and lines and p.end_line >= lines:
            text, end = _read_whole(executor, p.path, lines)
        else:
            text, end = _read_lines(executor, p.path, p.start_line, p.end_line)
        if text is not None:
            out.append(Passage(first_number + len(out), p.path, p.start_line, max(end, p.start_line), text,
                               p.tokens, p.score, p.page))
    return out


def _read_whole(executor: PlanExecutor, path: str, lines: int) -> tuple[str | None, int]:
    got = executor.call("read_document", {"path": path})
    if not got.ok:
        return None, 0
    text = "".join(str(s.get("text", "")) for s in got.spans)
    end = max((int(s["end_line"]) for s in got.spans), default=0)
    if end < lines:  # the tool cut a long document short: read the rest by spans
        rest, rest_end = _read_lines(executor, path, end + 1, lines)
        text, end = text + (rest or ""), max(end, rest_end)
    return text, end


def _read_lines(executor: PlanExecutor, path: str, start: int, end: int) -> tuple[str | None, int]:
    parts: list[str] = []
    last = 0
    for a in range(start, end + 1, MAX_SPAN_LINES):
        got = executor.call("read_span", {"path": path, "start_line": a,
                                          "end_line": min(a + MAX_SPAN_LINES - 1, end)})
        if not got.ok:
            break
        parts += [str(s.get("text", "")) for s in got.spans]
        last = max((int(s["end_line"]) for s in got.spans), default=last)
    return ("".join(parts) if parts else None), last
