"""Building what the model reads, always in document order (path, then position).

Order-preserving RAG (OP-RAG) found that retrieved chunks read in their original order beat the same
chunks in relevance order; LongRAG that larger units help. So retrieved chunks are widened to their
enclosing unit (function, section — the chunker's ``unit_*`` lines — or the whole file) when that is
cheap, adjacent chunks are merged, and every passage carries a number the answer can cite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from corral.agents.retrieval.hybrid import Ranked
from corral.core.db import Chunk, Document, DocumentStatus

__all__ = [
    "HEADER_TOKENS",
    "Box",
    "Passage",
    "corpus_parts",
    "image_kind",
    "image_of",
    "order_preserving",
    "ranked_parts",
    "render",
    "scoped_doc_tokens",
    "scoped_documents",
    "source_name",
    "whole_corpus",
]

HEADER_TOKENS = 12  # "[n] path:lines" above each passage or document (the router counts it too)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the stored image's pixels


def image_kind(image_ref: str | None, figure: bool) -> str | None:
    """What an OCR'd source is to a reader: the ``image`` file itself (its one image has the ref
    "image", whatever its chunks are labelled), a ``figure`` inside a document with text, or a
    ``scan`` (a page read by OCR); None for text."""
    if image_ref is None:
        return None
    if image_ref == "image":
        return "image"
    return "figure" if figure else "scan"


def source_name(path: str, page: int | None, image_ref: str | None, figure: bool) -> str | None:
    """How people name an OCR'd source: ``report.pdf p.4 (figure)``, ``scan.png (image)``,
    ``scan.pdf p.2 (scan)``; None for text (its ``path:lines`` label names it)."""
    kind = image_kind(image_ref, figure)
    if kind is None:
        return None
    return f"{path}{f' p.{page}' if page is not None else ''} ({kind})"


@dataclass(slots=True)
class Passage:
    number: int
    path: str
    start_line: int
    end_line: int
    text: str
    tokens: int
    score: float | None = None
    page: int | None = None
    # OCR'd text: the document's image it was read from (DocumentImage.ref), the box around it there,
    # and whether that image is a figure of a document with text.
    image_ref: str | None = None
    bbox: Box | None = None
    figure: bool = False

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    @property
    def header(self) -> str:
        """What the model reads above the passage: its label, and for OCR'd text what it came from
        (the model is told it reads text recognised in a figure, not the figure's words as written)."""
        kind = image_kind(self.image_ref, self.figure)
        if kind is None:
            return self.label
        page = f"p.{self.page} " if self.page is not None else ""
        return f"{self.label} ({page}{kind}, OCR text)"


def _box(chunk: Chunk) -> Box | None:
    b = chunk.bbox
    if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(isinstance(v, int) for v in b):
        return None  # a malformed stored box is shown without one, never trusted
    return (b[0], b[1], b[2], b[3])


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def image_of(chunks: Sequence[Chunk]) -> dict[str, Any]:
    """The image fields of a passage made of ``chunks``: those of their one image when all were read
    from the same one (the boxes joined), else none."""
    refs = {c.image_ref for c in chunks}
    if len(refs) != 1 or None in refs:
        return {}
    box: Box | None = None
    for c in chunks:
        box = _union(box, _box(c))
    return {"image_ref": chunks[0].image_ref, "bbox": box,
            "figure": all(c.symbol_kind == "figure" for c in chunks)}


def _passages_from_chunks(
    chunks: Iterable[tuple[Chunk, float | None]], first_number: int = 1
) -> list[Passage]:
    """Merge (chunk, score) pairs into passages; the input is sorted by (path, ordinal) here."""
    ordered = sorted(chunks, key=lambda cs: (cs[0].document.path, cs[0].ordinal))
    out: list[Passage] = []
    last: tuple[int, int] | None = None
    for chunk, score in ordered:
        # Text read from one image stays one passage, apart from the text around it: its citation
        # shows that image and the box around what was read.
        if last == (chunk.document_id, chunk.ordinal - 1) and out[-1].image_ref == chunk.image_ref:
            p = out[-1]
            p.text += chunk.text
            p.end_line = chunk.end_line
            p.tokens += chunk.token_count
            p.bbox = _union(p.bbox, _box(chunk)) if p.image_ref is not None else None
            p.figure = p.figure and chunk.symbol_kind == "figure"
            if score is not None:
                p.score = max(p.score or score, score)
        else:
            out.append(Passage(first_number + len(out), chunk.document.path, chunk.start_line, chunk.end_line,
                               chunk.text, chunk.token_count, score, chunk.page, **image_of([chunk])))
        last = (chunk.document_id, chunk.ordinal)
    return out


def _unit_of(chunk: Chunk, expand_limit: int) -> list[Chunk]:
    """The chunks of ``chunk``'s enclosing unit if it costs at most ``expand_limit`` tokens, else []."""
    doc = chunk.document
    if doc.token_count <= expand_limit:
        return list(doc.chunks)  # the whole file is cheap: read it all
    if chunk.unit_start_line is None or chunk.unit_end_line is None:
        return []
    lo, hi = chunk.unit_start_line, chunk.unit_end_line
    unit = [c for c in doc.chunks if c.start_line >= lo and c.end_line <= hi]
    return unit if sum(c.token_count for c in unit) <= expand_limit else []


def _widen(chunk: Chunk, expand_limit: int, neighbours: int) -> list[Chunk]:
    """What to read around a hit: its unit when that costs at most ``expand_limit``; else, in code,
    ``neighbours`` chunks on each side (a function's ``def`` line often sits in the chunk before its
    body, and a class's pieces hold several methods)."""
    unit = _unit_of(chunk, expand_limit) if expand_limit > 0 else []
    if unit or chunk.document.kind != "code" or neighbours <= 0:
        return unit
    lo, hi = chunk.ordinal - neighbours, chunk.ordinal + neighbours
    return [c for c in chunk.document.chunks if lo <= c.ordinal <= hi]


def _take(ranked: Sequence[Ranked], budget: int, expand_limit: int, neighbours: int
          ) -> dict[str, tuple[Chunk, float | None]]:
    """Chunks best-first while they fit ``budget``, each widened (``_widen``) when that still fits."""
    chosen: dict[str, tuple[Chunk, float | None]] = {}
    used = 0
    for r in ranked:
        if r.chunk.id in chosen:
            continue
        cost = r.chunk.token_count + HEADER_TOKENS
        if used + cost > budget:
            continue
        chosen[r.chunk.id] = (r.chunk, r.score)
        used += cost
        extra = [c for c in _widen(r.chunk, expand_limit, neighbours) if c.id not in chosen]
        extra_cost = sum(c.token_count for c in extra)
        if extra and used + extra_cost <= budget:
            chosen.update((c.id, (c, None)) for c in extra)
            used += extra_cost
    return chosen


def order_preserving(
    ranked: Sequence[Ranked], budget: int, *, expand_limit: int = 0, neighbours: int = 0
) -> list[Passage]:
    """Take chunks best-first while they fit ``budget`` — so the whole budget is filled when the
    ranking is deep enough — widening each hit (``_widen``) when that still fits, then merge in
    document order."""
    return _passages_from_chunks(_take(ranked, budget, expand_limit, neighbours).values())


def scoped_documents(
    ranked: Sequence[Ranked], budget: int, max_docs: int = 8, *, top_k: int | None = None, fill: int = 0,
    expand_limit: int = 0, neighbours: int = 0,
) -> list[Passage]:
    """The documents the best ``top_k`` hits fall in (at most ``max_docs``), read whole while they fit
    ``budget``; then up to ``fill`` tokens of what is left spent on the other documents' hits, read as
    retrieve reads them. All in path order."""
    seen: set[int] = set()
    read: set[int] = set()
    chosen: list[tuple[Chunk, float | None]] = []
    used = 0
    for r in ranked[:top_k] if top_k is not None else ranked:
        doc = r.chunk.document
        if doc.id in seen:
            continue
        if len(seen) >= max_docs:
            break
        seen.add(doc.id)
        cost = doc.token_count + HEADER_TOKENS
        if used + cost > budget:
            continue
        used += cost
        read.add(doc.id)
        chosen += [(c, r.score if c.id == r.chunk.id else None) for c in doc.chunks]
    left = min(budget - used, fill)
    if left > 0:
        rest = [r for r in ranked if r.chunk.document.id not in read]
        chosen += _take(rest, left, expand_limit, neighbours).values()
    return _passages_from_chunks(chosen)


def whole_corpus(session: Session, corpus_id: int, budget: int | None = None) -> list[Passage]:
    """Every indexed document whole, in path order; with ``budget``, the corpus read in that order up
    to the budget: documents whole while they fit, then the first one that does not fit from its start,
    chunk by chunk, as far as the budget goes — and no further (what is read is a prefix of the corpus,
    never a document skipped for a later one)."""
    docs = session.scalars(
        select(Document)
        .where(Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
        .order_by(Document.path)
        .options(selectinload(Document.chunks))
    )
    out: list[Passage] = []
    used = 0
    for d in docs:
        cost = d.token_count + HEADER_TOKENS
        if budget is None or used + cost <= budget:
            used += cost
            out.append(Passage(len(out) + 1, d.path, 1, max(d.line_count, 1),
                               "".join(c.text for c in d.chunks), d.token_count,
                               page=_one_page(d.chunks), **image_of(d.chunks)))
            continue
        head = _head(d.chunks, budget - used - HEADER_TOKENS)
        if head:
            out.append(Passage(len(out) + 1, d.path, 1, head[-1].end_line, "".join(c.text for c in head),
                               sum(c.token_count for c in head), page=_one_page(head), **image_of(head)))
        break
    return out


def _one_page(chunks: Sequence[Chunk]) -> int | None:
    """The page a passage of ``chunks`` lies on, when they all lie on one (a one-page scan read
    whole is cited as that page, like the same text found by retrieval)."""
    pages = {c.page for c in chunks}
    return pages.pop() if len(pages) == 1 else None


def _head(chunks: Sequence[Chunk], budget: int) -> list[Chunk]:
    """A document's first chunks, in order, while their tokens fit ``budget``."""
    out: list[Chunk] = []
    used = 0
    for c in sorted(chunks, key=lambda c: c.ordinal):
        if used + c.token_count > budget:
            break
        out.append(c)
        used += c.token_count
    return out


def corpus_parts(session: Session, corpus_id: int, budget: int) -> list[list[Passage]]:
    """The whole corpus in document order, cut into parts of at most ``budget`` tokens (for map-reduce).

    Documents are kept whole inside a part when they fit; a document larger than a part is cut at chunk
    boundaries. Passage numbers run on across parts, so citations stay unique.
    """
    docs = session.scalars(
        select(Document)
        .where(Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
        .order_by(Document.path)
        .options(selectinload(Document.chunks))
    )
    return _pack(([(c, None) for c in d.chunks] for d in docs), budget, keep_documents=True)


def ranked_parts(
    ranked: Sequence[Ranked], budget: int, max_parts: int, *, expand_limit: int = 0, neighbours: int = 0
) -> list[list[Passage]]:
    """Map-reduce over what retrieval points at, for a corpus whose parts would outnumber ``max_parts``:
    hits taken best-first (widened as retrieve widens them) while they fill at most ``max_parts`` parts
    of ``budget`` tokens, then read in document order, cut into those parts."""
    if max_parts <= 0 or not ranked:
        return []
    # A part is filled to within one chunk of the budget, so this many tokens pack into max_parts parts.
    largest = max(r.chunk.token_count + HEADER_TOKENS for r in ranked)
    total = max_parts * max(budget - largest, budget // 2)
    chosen = sorted(_take(ranked, total, expand_limit, neighbours).values(),
                    key=lambda cs: (cs[0].document.path, cs[0].ordinal))
    by_doc: dict[int, list[tuple[Chunk, float | None]]] = {}
    for cs in chosen:
        by_doc.setdefault(cs[0].document_id, []).append(cs)
    return _pack(by_doc.values(), budget, keep_documents=False)[:max_parts]


def _pack(documents: Iterable[list[tuple[Chunk, float | None]]], budget: int, *, keep_documents: bool
          ) -> list[list[Passage]]:
    """Chunks (grouped by document, in document order) packed into parts of at most ``budget`` tokens;
    ``keep_documents`` starts a new part rather than split a document that would fit whole in one."""
    parts: list[list[Passage]] = []
    current: list[tuple[Chunk, float | None]] = []
    used = 0
    number = 1

    def flush() -> None:
        nonlocal current, used, number
        if current:
            part = _passages_from_chunks(current, number)
            number += len(part)
            parts.append(part)
        current, used = [], 0

    for chunks in documents:
        whole = sum(c.token_count for c, _ in chunks) + HEADER_TOKENS
        if keep_documents and used and used + whole > budget:
            flush()
        for c, score in chunks:
            cost = c.token_count + HEADER_TOKENS
            if used and used + cost > budget:
                flush()
            current.append((c, score))
            used += cost
    flush()
    return parts


def scoped_doc_tokens(ranked: Sequence[Ranked], max_docs: int = 8) -> tuple[int, ...]:
    """Tokens of each of the first ``max_docs`` documents the hits fall in, read whole, best hit first
    (not capped: the router compares their sum with its budget to know whether scoped-stuff can read
    them all)."""
    by_doc: dict[int, int] = {}
    for r in ranked:
        if len(by_doc) >= max_docs:
            break
        by_doc.setdefault(r.chunk.document.id, r.chunk.document.token_count + HEADER_TOKENS)
    return tuple(by_doc.values())


def render(passages: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{p.number}] {p.header}\n{p.text.strip(chr(10))}" for p in passages)
