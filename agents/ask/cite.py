"""Citing: the answer's citations checked against what was read, the unverifiable ones flagged.

Citations name ``[n]`` (a numbered source) or ``path:lines``; each is checked against the corpus, and
quotations against the text the model was given. After reading with the tools, the sources are what
was read before, the spans the tools read and — for quotes — everything the tools returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.agents.citations import Citation, verify_answer
from corral.agents.executor import ExecutionResult
from corral.agents.retrieval import Passage

__all__ = ["TOOL_OUTPUT", "cite", "cite_tool_answer", "ordered"]

TOOL_OUTPUT = "(tool output)"  # the pseudo-source quotes are checked against


def cite(answer: str, passages: Sequence[Passage], line_counts: Mapping[str, int],
         evidence: Sequence[Passage]) -> tuple[list[Citation], list[str]]:
    """Citations of an answer written from ``passages``, and the flags of those unverified."""
    check = verify_answer(answer, passages, line_counts, evidence)
    return ordered(check.citations), check.unverified


def cite_tool_answer(
    answer: str, result: ExecutionResult, line_counts: Mapping[str, int], *,
    read_before: Sequence[Passage] = (), evidence_before: Sequence[Passage] = (),
) -> tuple[list[Citation], list[str]]:
    """Citations of an answer written after reading with tools, and the flags of those unverified;
    evidence is ``evidence_before`` then the first spans the tools read."""
    read = [Passage(n, sp["path"], sp["start_line"], sp["end_line"], str(sp.get("text", "")), 0)
            for n, sp in enumerate(result.spans, start=len(read_before) + 1)]
    sources = [*read_before, *read, Passage(0, TOOL_OUTPUT, 0, 0, "\n".join(result.tool_text), 0)]
    check = verify_answer(answer, sources, line_counts, evidence=[*evidence_before, *read[:5]])
    return ordered([c for c in check.citations if c.path != TOOL_OUTPUT]), check.unverified


def ordered(citations: list[Citation]) -> list[Citation]:
    """Cited first, then verified, then by retrieval score."""
    return sorted(citations, key=lambda c: (not c.cited_by_model, not c.verified, -(c.score or 0.0)))
