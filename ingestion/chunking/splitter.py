"""Splitting a document into chunks: code along definitions, prose along sections and paragraphs.

Spans are an exact partition of the document: concatenated in ordinal order they give back the text,
so "read the document whole" and "read these passages" see the same bytes, and character offsets map
to 1-based line numbers for citations. Every span says what it holds (``symbol``, ``symbol_kind``)
and where it sits (``parent`` and the ``unit_*_line`` range of the enclosing definition or section,
the whole file at top level), so retrieval can expand a hit to its function, class or section.

Dispatch by :class:`FileKind`: code with a bundled tree-sitter grammar → :mod:`.code`; Markdown and
the formats parsed into Markdown (HTML, DOCX, notebooks) → Markdown sections; reStructuredText →
its sections; PDF → pages; anything else → paragraphs. Other code (JSON, YAML, CSS...) keeps
LangChain's recursive splitter.

Text read from images by OCR (the parsed document's ``ocr`` blocks) is cut from the text around it:
a chunk holds either OCR'd text of one image or none, and says which image (``image_ref``) and the
box around its lines in that image (``bbox``); a figure's chunks are labelled ``symbol_kind``
``"figure"`` with the image's ref as ``symbol``, a scanned page's chunks keep ``"page"``.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from corral.ingestion.chunking.code import code_units, tree_sitter_language
from corral.ingestion.chunking.prose import markdown_units, page_units, paragraph_units, rst_units
from corral.ingestion.chunking.units import Piece, Unit, pack
from corral.ingestion.parsing import FileKind, ParsedDocument
from corral.ingestion.parsing.figures import OcrBlock
from corral.ingestion.parsing.ocr import Box

__all__ = ["MARKDOWN_KINDS", "PARENT_MAX", "SYMBOL_MAX", "Span", "chunk_document", "split_document"]

_log = logging.getLogger(__name__)
_LANGCHAIN_LANGUAGES = {lang.value for lang in Language}
# Column widths of ``Chunk.symbol`` and ``Chunk.parent``: deep heading paths and qualified names
# are cut to fit (PostgreSQL refuses longer strings).
SYMBOL_MAX, PARENT_MAX = 512, 1024
# Kinds whose text is Markdown (the HTML, DOCX and notebook parsers write Markdown headings).
MARKDOWN_KINDS = frozenset({"markdown", "html", "docx", "notebook"})
# A definition line, to label spans of code that has no tree-sitter grammar here.
_SYMBOL = re.compile(
    r"^[ \t]*(?:export\s+)?(?:async\s+)?(?:pub\s+)?"
    r"(?:def|class|function|func|fn|interface|struct|enum|trait|impl|module)\s+([A-Za-z_][\w.]*)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Span:
    """One chunk. Lines are 1-based and inclusive, counted on its first and last non-blank chars.

    ``symbol``: the definition or section the chunk starts with (qualified: ``Class.method``,
    ``Guide > Install``); ``symbol_kind``: function, method, class, struct, section, page... or
    ``None`` for top-level code outside definitions. ``parent``: the enclosing definition or
    heading path (``None`` at file level); ``unit_start_line``/``unit_end_line``: its lines (the
    whole file at file level). ``page``: the 1-based page where the chunk starts (paged formats).
    ``image_ref``: set exactly when the chunk's text was read by OCR from the document's image of
    that ref; ``bbox``: then the box ``(x0, y0, x1, y1)`` around the chunk's lines in that stored
    image's pixels (``None`` if none of its lines has a box, e.g. alt text only).
    """

    ordinal: int
    char_start: int
    char_end: int
    start_line: int
    end_line: int
    text: str
    symbol: str | None = None
    symbol_kind: str | None = None
    parent: str | None = None
    unit_start_line: int | None = None
    unit_end_line: int | None = None
    page: int | None = None
    image_ref: str | None = None
    bbox: Box | None = None


@dataclass(frozen=True, slots=True)
class _Located:
    """An OCR block with its char range in the text being split."""

    start: int
    end: int
    block: OcrBlock


def chunk_document(doc: ParsedDocument, chunk_chars: int) -> list[Span]:
    """Spans of a parsed document (carries its pages and OCR blocks to the chunker)."""
    return split_document(doc.text, doc.kind, chunk_chars, pages=doc.pages, ocr=doc.ocr)


def split_document(
    text: str, kind: FileKind, chunk_chars: int, *, pages: Sequence[int] = (),
    ocr: Sequence[OcrBlock] = (),
) -> list[Span]:
    """Split ``text`` into spans of about ``chunk_chars`` characters along its natural boundaries.

    A span exceeds ``chunk_chars`` only by whitespace folded into it. ``pages`` are the char offsets
    where pages start (PDF); ``ocr`` the blocks of lines read from images, each cut into chunks of
    its own.
    """
    if not text:
        return []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    bounds = [*line_starts, len(text)]
    lines = text.split("\n")
    pieces = _pieces(text, kind, chunk_chars, lines, bounds, pages)
    if pieces is None:
        pieces = _langchain_pieces(text, kind, chunk_chars)
    located = _locate(ocr, bounds, len(lines))
    if located:
        pieces = _cut(pieces, located)
    return _spans(text, pieces, line_starts, len(lines), pages, label_code=kind.kind == "code",
                  located=located)


def _locate(ocr: Sequence[OcrBlock], bounds: list[int], n_lines: int) -> list[_Located]:
    out: list[_Located] = []
    for block in sorted(ocr, key=lambda b: b.start_line):
        start, end = bounds[min(block.start_line, n_lines)], bounds[min(block.end_line, n_lines)]
        if end > start and (not out or start >= out[-1].end):
            out.append(_Located(start, end, block))
    return out


def _cut(pieces: list[Piece], located: list[_Located]) -> list[Piece]:
    """Pieces cut where OCR blocks begin and end; those inside a figure take its label."""
    cuts = sorted({c for loc in located for c in (loc.start, loc.end)})
    starts = [loc.start for loc in located]
    out: list[Piece] = []
    for piece in pieces:
        at = piece.char_start
        inner = cuts[bisect.bisect_right(cuts, piece.char_start):bisect.bisect_left(cuts, piece.char_end)]
        for end in [*inner, piece.char_end]:
            if end <= at:
                continue
            name, kind = piece.name, piece.kind
            i = bisect.bisect_right(starts, at) - 1
            if i >= 0 and at < located[i].end and located[i].block.kind == "figure":
                name, kind = located[i].block.ref, "figure"
            out.append(Piece(at, end, name, kind, piece.owner))
            at = end
    return out


def _image_of(first: int, start_line: int, end_line: int, located: list[_Located]
              ) -> tuple[str | None, Box | None]:
    """The image ref and box of a span whose first non-blank char is at ``first`` and whose lines
    are ``start_line..end_line`` (1-based)."""
    i = bisect.bisect_right([loc.start for loc in located], first) - 1
    if i < 0 or first >= located[i].end:
        return None, None
    block = located[i].block
    lo, hi = max(start_line - 1, block.start_line), min(end_line, block.end_line)
    boxes = [b for b in block.boxes[lo - block.start_line:hi - block.start_line] if b is not None]
    if not boxes:
        return block.ref, None
    return block.ref, (min(b[0] for b in boxes), min(b[1] for b in boxes),
                       max(b[2] for b in boxes), max(b[3] for b in boxes))


def _pieces(
    text: str, kind: FileKind, chunk_chars: int, lines: list[str], bounds: list[int],
    pages: Sequence[int],
) -> list[Piece] | None:
    root: Unit | None = None
    if kind.kind == "code":
        grammar = tree_sitter_language(kind.language)
        if grammar is None:
            return None
        try:
            root = code_units(text, grammar, len(lines))
        except (LookupError, ValueError, RuntimeError, OSError, ImportError) as exc:
            _log.warning("tree-sitter %s grammar unavailable (%s); using the text splitter", grammar, exc)
            return None
    elif kind.kind in MARKDOWN_KINDS:
        root = markdown_units(lines)
    elif kind.kind == "rst":
        root = rst_units(lines)
    elif pages:
        starts = bounds[:-1]
        root = page_units(lines, [bisect.bisect_right(starts, p) - 1 for p in pages])
    else:
        root = paragraph_units(lines)
    try:
        return pack(text, bounds, root, chunk_chars)
    except RecursionError:  # pathological nesting: plain line packing still partitions exactly
        return pack(text, bounds, Unit(0, len(lines), None, None), chunk_chars)


def _langchain_pieces(text: str, kind: FileKind, chunk_chars: int) -> list[Piece]:
    language = kind.language if kind.kind == "code" else None
    parts = _splitter(language, chunk_chars).split_text(text)
    if "".join(parts) != text:  # the splitter dropped something: fall back to plain slices
        parts = [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    pieces, offset = [], 0
    for part in parts:
        pieces.append(Piece(offset, offset + len(part), None, None, None))
        offset += len(part)
    return pieces


@lru_cache(maxsize=64)
def _splitter(language: str | None, chunk_chars: int) -> RecursiveCharacterTextSplitter:
    # No overlap and no stripping: the pieces must concatenate back to the exact document.
    if language in _LANGCHAIN_LANGUAGES:
        return RecursiveCharacterTextSplitter.from_language(
            Language(language), keep_separator="start", chunk_size=chunk_chars, chunk_overlap=0,
            strip_whitespace=False,
        )
    return RecursiveCharacterTextSplitter(
        keep_separator="end", chunk_size=chunk_chars, chunk_overlap=0, strip_whitespace=False
    )


def _spans(
    text: str, pieces: list[Piece], line_starts: list[int], n_lines: int, pages: Sequence[int],
    *, label_code: bool, located: list[_Located] | None = None,
) -> list[Span]:
    spans: list[Span] = []
    carry_from: int | None = None  # leading whitespace-only pieces, folded into the next span
    for piece in pieces:
        start, end = piece.char_start, piece.char_end
        if end <= start:
            continue
        body = text[start:end]
        if not body.strip():
            if spans:
                prev = spans[-1]
                spans[-1] = _replace(prev, char_end=end, text=prev.text + body)
            elif carry_from is None:
                carry_from = start
            continue
        if carry_from is not None:
            start, carry_from = carry_from, None
            body = text[start:end]
        first = start + (len(body) - len(body.lstrip()))
        last = start + len(body.rstrip()) - 1
        symbol, kind = piece.name, piece.kind
        if symbol is None and label_code and piece.owner is None:
            match = _SYMBOL.search(body)
            symbol = match.group(1) if match else None
        owner = piece.owner
        start_line = bisect.bisect_right(line_starts, first)
        end_line = bisect.bisect_right(line_starts, last)
        image_ref, bbox = _image_of(first, start_line, end_line, located) if located else (None, None)
        spans.append(Span(
            ordinal=len(spans), char_start=start, char_end=end,
            start_line=start_line, end_line=end_line,
            text=body, symbol=_cap(symbol, SYMBOL_MAX), symbol_kind=kind,
            parent=_cap(owner.name, PARENT_MAX) if owner is not None else None,
            unit_start_line=owner.start + 1 if owner is not None else 1,
            unit_end_line=owner.end if owner is not None else n_lines,
            page=bisect.bisect_right(pages, first) or 1 if pages else None,
            image_ref=image_ref, bbox=bbox,
        ))
    if carry_from is not None:  # the whole text is whitespace
        spans.append(Span(0, carry_from, len(text), 1, n_lines, text[carry_from:], unit_start_line=1,
                          unit_end_line=n_lines, page=1 if pages else None))
    return spans


def _cap(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[: limit - 1] + "…"


def _replace(span: Span, *, char_end: int, text: str) -> Span:
    return Span(span.ordinal, span.char_start, char_end, span.start_line, span.end_line, text,
                span.symbol, span.symbol_kind, span.parent, span.unit_start_line, span.unit_end_line,
                span.page, span.image_ref, span.bbox)
