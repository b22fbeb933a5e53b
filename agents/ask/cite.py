"""Citing: the answer's citations checked against what was read, the unverifiable ones flagged.

Citations name ``[n]`` (a numbered source) or ``path:lines``; each is checked against the corpus, and
quotations against the text the model was given. After reading with the tools, the sources are what
was read before, the spans the tools read and — for quotes — everything the tools returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.agents.ask.generate import says_unanswerable
from corral.agents.citations import CITED, READ, UNSUPPORTED, Citation, verify_answer
from corral.agents.executor import ExecutionResult
from corral.agents.retrieval import Passage

__all__ = ["SUPPORT_STATES", "TOOL_OUTPUT", "answer_support", "cite", "cite_tool_answer", "ordered"]

TOOL_OUTPUT = "(tool output)"  # the pseudo-source quotes are checked against


def cite(answer: str, passages: Sequence[Passage], line_counts: Mapping[str, int],
         evidence: Sequence[Passage], question: str = "") -> tuple[list[Citation], list[str]]:
    """Citations of an answer written from ``passages``, and the flags of those unverified."""
    check = verify_answer(answer, passages, line_counts, evidence, question)
    return ordered(check.citations), check.unverified


def cite_tool_answer(
    answer: str, result: ExecutionResult, line_counts: Mapping[str, int], *,
    read_before: Sequence[Passage] = (), evidence_before: Sequence[Passage] = (), question: str = "",
) -> tuple[list[Citation], list[str]]:
    """Citations of an answer written after reading with tools, and the flags of those unverified;
    evidence is ``evidence_before`` then the first spans the tools read."""
    read = [Passage(n, sp["path"], sp["start_line"], sp["end_line"], str(sp.get("text", "")), 0)
            for n, sp in enumerate(result.spans, start=len(read_before) + 1)]
    sources = [*read_before, *read, Passage(0, TOOL_OUTPUT, 0, 0, "\n".join(result.tool_text), 0)]
    check = verify_answer(answer, sources, line_counts, evidence=[*evidence_before, *read[:5]],
                          question=question)
    return ordered([c for c in check.citations if c.path != TOOL_OUTPUT]), check.unverified


def ordered(citations: list[Citation]) -> list[Citation]:
    """Cited first, then unsupported, then read; by retrieval score within each."""
    rank = {CITED: 0, UNSUPPORTED: 1, READ: 2}
    return sorted(citations, key=lambda c: (rank.get(c.support, 3), not c.verified, -(c.score or 0.0)))


SUPPORT_STATES = ("supported", "partly-supported", "unsupported", "not-found")


def answer_support(answer: str, citations: Sequence[Citation | Mapping[str, object]]) -> str:
    """What the answer as a whole rests on: ``not-found`` when it says the sources do not hold the
    answer; ``supported`` when every source it points at holds its claim; ``partly-supported`` when
    some do; ``unsupported`` when none does (or it points at nothing)."""
    if answer.strip() and says_unanswerable(answer):
        return "not-found"
    labels = [c.support if isinstance(c, Citation) else str(c.get("support", READ)) for c in citations]
    cited, unsupported = labels.count(CITED), labels.count(UNSUPPORTED)
    if not cited:
        return "unsupported"
    return "partly-supported" if unsupported else "supported"
