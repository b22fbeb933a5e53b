"""Check an answer's citations and quotations against the text the model was given.

Contract: pure functions over the answer, the passages read and a path → line-count map of the
corpus; nothing here trusts the model. A citation is *verified* when it names a passage that was read
or a line range that exists in an indexed document; a quotation is verified when its text (whitespace
normalised, case-insensitive) occurs in a passage read. Everything else is flagged, never dropped.

Each citation also carries its *support*, what a reader may rest on it:
- ``cited``: the model pointed at it, and the span holds the claim it was attached to — the claim's
  quoted text, or most of its content words (the sentence around the marker, identifiers split);
- ``unsupported``: the model pointed at it, but the span does not hold the claim (or was never read);
- ``read``: in the model's context, not pointed at. Never shown as a verified source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from corral.agents.retrieval import Box, Passage, source_name

__all__ = ["CITED", "READ", "UNSUPPORTED", "Citation", "QuoteCheck", "Verification", "verify_answer"]

_NUMBER = re.compile(r"\[(\d{1,4})\]")
# path:12 or path:12-30 (or path:L12-L30); a path has a dot or a slash so "note: 3" is not a citation.
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]*[\w-]\.[\w]+|(?:[\w.-]+/)+[\w.-]+):L?(\d{1,7})"
                   r"(?:\s*[-\u2013]\s*L?(\d{1,7}))?")
_QUOTE = re.compile(r"\"([^\"\n]{12,400})\"|“([^”\n]{12,400})”")
_SPACE = re.compile(r"\s+")
_MARKER = re.compile(_NUMBER.pattern + "|" + _PATH.pattern)
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
_SALIENT = re.compile(r"(?<![\w.])(?:\d+(?:[.,/:]\d+)+|\d{2,}|[A-Z][A-Z0-9]{1,9})(?![\w.]\w)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[`\"(])|\n+")
_INLINE = re.compile(r"`([^`\n]{3,200})`|\"([^\"\n]{3,400})\"|“([^”\n]{3,400})”")
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does",
    "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "may",
    "more", "most", "no", "not", "of", "on", "or", "our", "should", "so", "such", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "use", "used", "uses",
    "using", "was", "we", "were", "what", "when", "where", "which", "while", "who", "why", "will",
    "with", "would", "you", "your", "also", "each", "other", "only", "any", "all", "one", "two",
    "source", "sources", "answer", "question", "shown", "given", "see",
))
MAX_CLAIM_CHARS = 1000
SUPPORT_SHARE = 0.5  # of the claim's content words the span must hold
CITED, READ, UNSUPPORTED = "cited", "read", "unsupported"
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
    support: str = READ  # cited | read | unsupported (see the module's docstring)
    # OCR'd text: the document's image it was read from, the box around it there, whether a figure.
    image_ref: str | None = None
    bbox: Box | None = None
    figure: bool = False

    @property
    def label(self) -> str:
        """``path:a-b``: what the model cites and the checks key on; stable for every source."""
        return f"{self.path}:{self.start_line}-{self.end_line}"

    @property
    def display(self) -> str:
        """What people read: the label, or for OCR'd text its image (``report.pdf p.4 (figure)``); a
        citation of no lines (``[7]`` naming no source) by what it named."""
        named = source_name(self.path, self.page, self.image_ref, self.figure)
        return named or (self.label if self.start_line > 0 else self.path)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bbox"] = list(self.bbox) if self.bbox is not None else None
        return {**data, "label": self.label, "display": self.display}

    @classmethod
    def of(cls, p: Passage, score: float | None, cited_by_model: bool, note: str | None,
           support: str) -> Citation:
        """A citation of passage ``p`` (its span, page and image)."""
        return cls(p.path, p.start_line, p.end_line, score, cited_by_model, True, note, p.page, support,
                   p.image_ref, p.bbox, p.figure)


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
                + [f"{c.label}: cited, but {c.note}" for c in self.citations
                   if c.verified and c.support == UNSUPPORTED]
                + [f"quote not found in the sources: {q.text[:80]!r}" for q in self.quotes if not q.verified])


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def _content_words(text: str) -> set[str]:
    """Lower-cased words worth checking: identifiers split on dots and underscores, numbers kept,
    stop words and one- or two-letter words dropped."""
    words = {w.lower() for w in _WORDS.findall(text)}
    return {w for w in words if (w.isdigit() or len(w) > 2) and w not in _STOP}


def _claim(answer: str, start: int, end: int) -> str:
    """What the marker at ``start:end`` backs: the words since the previous marker of its sentence
    ("A [1]; B [2]." gives [2] "B"); the whole sentence when that is nearly nothing, and with the
    sentence before when the marker stands nearly alone ("See [2].")."""
    lo = max(0, start - MAX_CLAIM_CHARS)  # a claim is a sentence or two: look back this far at most
    answer, start = answer[lo:end + MAX_CLAIM_CHARS], start - lo
    bounds = [0, *(m.end() for m in _SENTENCE.finditer(answer)), len(answer) + 1]
    i = next(k for k in range(len(bounds) - 1) if bounds[k] <= start < bounds[k + 1])
    sentence_start = bounds[i]
    before = [m.end() for m in _MARKER.finditer(answer, sentence_start, start)]
    own = _strip_markers(answer[max([sentence_start, *before]):start])
    if len(_content_words(own)) >= 2:
        return own
    text = answer[sentence_start:bounds[i + 1]]
    if len(_content_words(_strip_markers(text))) < 2 and i > 0:
        text = answer[bounds[i - 1]:bounds[i + 1]]
    return _strip_markers(text)


def _strip_markers(text: str) -> str:
    return _PATH.sub(" ", _NUMBER.sub(" ", text))


def _holds(span: str, claim: str, asked: str = "") -> tuple[bool, str | None]:
    """Whether ``span`` holds ``claim``; the reason when it does not. Words of the question (``asked``)
    that the claim repeats are not what it adds, so they are checked only when nothing else is left."""
    haystack = _norm(span)
    quotes = [q for m in _INLINE.finditer(claim) for q in m.groups() if q]
    if any(_norm(q) in haystack for q in quotes):
        return True, None
    words = _content_words(claim)
    new = words - _content_words(asked)
    words = new or words
    if not words:
        return False, "no claim is attached to it"  # "[1] [2] [3]" alone points at nothing
    have = _content_words(span)
    found = {w for w in words if w in have or (len(w) > 5 and any(h.startswith(w[:6]) for h in have))}
    # Numbers and acronyms carry the claim ("TLS 1.2", "a pool of 10"): each must be in the span, or
    # the rest of the sentence, which echoes the question, would carry a made-up fact.
    echoed = asked.lower()
    absent = [t for t in _SALIENT.findall(claim) if t.lower() not in haystack and t.lower() not in echoed]
    if absent:
        return False, f"the span does not hold {', '.join(dict.fromkeys(absent[:4]))}"
    if len(found) >= max(1, SUPPORT_SHARE * len(words)):
        return True, None
    missing = ", ".join(sorted(words - found)[:6])
    return False, f"the span does not hold the claim ({len(found)} of {len(words)} words; lacks {missing})"


def _lines(p: Passage, start: int, end: int) -> str:
    """The text of lines ``start..end`` of a passage that covers them."""
    rows = p.text.splitlines()
    return "\n".join(rows[start - p.start_line:end - p.start_line + 1])


def verify_answer(
    answer: str,
    passages: Sequence[Passage],
    line_counts: Mapping[str, int],
    evidence: Sequence[Passage] = (),
    question: str = "",
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

    def fresh(path: str, start: int, end: int) -> bool:
        # The first mention of a source decides its label; later ones are not checked again (a
        # hostile answer of 100,000 markers costs one check per distinct source, at most 200).
        return (path, start, end) not in seen and len(out.citations) < MAX_CITATIONS

    for m in _NUMBER.finditer(answer):
        n = int(m.group(1))
        p = by_number.get(n)
        if p is None:
            add(Citation(f"[{n}]", 0, 0, None, True, False, "no source with this number was given",
                         support=UNSUPPORTED))
        elif fresh(p.path, p.start_line, p.end_line):
            ok, why = _holds(p.text, _claim(answer, m.start(), m.end()), question)
            add(Citation.of(p, p.score, True, why, CITED if ok else UNSUPPORTED))
    for m in _PATH.finditer(answer):
        path, start = m.group(1), int(m.group(2))
        end = int(m.group(3)) if m.group(3) else start
        lines = line_counts.get(path)
        if lines is None:
            add(Citation(path, start, end, None, True, False, "no such document in the corpus",
                         support=UNSUPPORTED))
        elif not 1 <= start <= end <= lines:
            add(Citation(path, start, end, None, True, False, f"the document has {lines} lines",
                         support=UNSUPPORTED))
        else:
            holder = next((p for p in passages
                           if p.path == path and p.start_line <= start and end <= p.end_line), None)
            if not fresh(path, start, end):
                continue
            if holder is None:
                add(Citation(path, start, end, None, True, True, "it was never read",
                             support=UNSUPPORTED))
            else:
                ok, why = _holds(_lines(holder, start, end), _claim(answer, m.start(), m.end()), question)
                add(replace(Citation.of(holder, holder.score, True, why, CITED if ok else UNSUPPORTED),
                            start_line=start, end_line=end))
    for p in evidence:
        # A passage read inside a span the answer already cites adds nothing but a second line
        # naming the same source (a scan read whole and found again by retrieval).
        if not any(c.cited_by_model and c.verified and c.path == p.path
                   and c.start_line <= p.start_line and p.end_line <= c.end_line
                   for c in out.citations):
            add(Citation.of(p, p.score, False, None, READ))

    normed = [(p.label, _norm(p.text)) for p in passages]
    for m in _QUOTE.finditer(answer):
        quote = m.group(1) or m.group(2) or ""
        q = _norm(quote)
        where = next((label for label, text in normed if q in text), None)
        out.quotes.append(QuoteCheck(quote, where is not None, where))
    return out
