"""Check an answer's citations and quotations against the text the model was given.

Contract: pure functions over the answer, the passages read and a path → line-count map of the
corpus; nothing here trusts the model. A citation is *verified* when it names a passage that was read
or a line range that exists in an indexed document; a quotation is verified when its text (whitespace
normalised, case-insensitive) occurs in a passage read. Everything else is flagged, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from corral.agents.retrieval import Passage

__all__ = ["Citation", "QuoteCheck", "Verification", "verify_answer"]

_NUMBER = re.compile(r"\[(\d{1,4})\]")
# path:12 or path:12-30 (or path:L12-L30); a path has a dot or a slash so "note: 3" is not a citation.
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]*[\w-]\.[\w]+|(?:[\w.-]+/)+[\w.-]+):L?(\d{1,7})"
                   r"(?:\s*[-\u2013]\s*L?(\d{1,7}))?")
_QUOTE = re.compile(r"\"([^\"\n]{12,400})\"|“([^”\n]{12,400})”")
_SPACE = re.compile(r"\s+")
MAX_CITATIONS = 200  # a model that prints thousands of "[1]" gets its first 200 checked


@dataclass(frozen=True, slots=True)
class Citation:
    path: str
    start_line: int
    end_line: int
    score: float | None
    cited_by_model: bool
    verified: bool
    note: str | None = None
    page: int | None = None

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


@dataclass(frozen=True, slots=True)
class QuoteCheck:
    text: str
    verified: bool
    found_in: str | None  # the label of the passage holding it


@dataclass(slots=True)
class Verification:
    citations: list[Citation] = field(default_factory=list)
    quotes: list[QuoteCheck] = field(default_factory=list)

    @property
    def unverified(self) -> list[str]:
        """Human-readable flags: citations and quotes that could not be checked against a source."""
        return ([f"{c.label}: {c.note}" for c in self.citations if not c.verified]
                + [f"quote not found in the sources: {q.text[:80]!r}" for q in self.quotes if not q.verified])


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def verify_answer(
    answer: str,
    passages: Sequence[Passage],
    line_counts: Mapping[str, int],
    evidence: Sequence[Passage] = (),
) -> Verification:
    """Citations the answer makes (first), then uncited ``evidence`` passages, each checked.

    ``line_counts`` maps every indexed path of the corpus to its line count, so ``path:lines`` citations
    outside what was read can still be checked for existence.
    """
    out = Verification()
    by_number = {p.number: p for p in passages}
    seen: set[tuple[str, int, int]] = set()

    def add(c: Citation) -> None:
        key = (c.path, c.start_line, c.end_line)
        if key not in seen and len(out.citations) < MAX_CITATIONS:
            seen.add(key)
            out.citations.append(c)

    for m in _NUMBER.finditer(answer):
        n = int(m.group(1))
        p = by_number.get(n)
        if p is None:
            add(Citation(f"[{n}]", 0, 0, None, True, False, "no source with this number was given"))
        else:
            add(Citation(p.path, p.start_line, p.end_line, p.score, True, True, None, p.page))
    for m in _PATH.finditer(answer):
        path, start = m.group(1), int(m.group(2))
        end = int(m.group(3)) if m.group(3) else start
        lines = line_counts.get(path)
        if lines is None:
            add(Citation(path, start, end, None, True, False, "no such document in the corpus"))
        elif not 1 <= start <= end <= lines:
            add(Citation(path, start, end, None, True, False, f"the document has {lines} lines"))
        else:
            read = any(p.path == path and p.start_line <= start and end <= p.end_line for p in passages)
            add(Citation(path, start, end, None, True, True, None if read else "exists, but was not read"))
    for p in evidence:
        add(Citation(p.path, p.start_line, p.end_line, p.score, False, True, None, p.page))

    normed = [(p.label, _norm(p.text)) for p in passages]
    for m in _QUOTE.finditer(answer):
        quote = m.group(1) or m.group(2) or ""
        q = _norm(quote)
        where = next((label for label, text in normed if q in text), None)
        out.quotes.append(QuoteCheck(quote, where is not None, where))
    return out
